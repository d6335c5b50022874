package core

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TLSOptions are the client TLS settings: what Python's ssl.SSLContext holds
// and what goconn_ssl_options carries. The zero value is asyncio's
// ssl=True: verify against the system roots and check the host name.
type TLSOptions struct {
	VerifyNone      bool       // CERT_NONE: no chain verification at all
	NoCheckHostname bool       // check_hostname False: the chain is still verified
	SystemRoots     RootsUsage // when the system roots are trusted

	CAFile string // PEM file of trusted CAs
	CAPath string // a folder of PEM or DER CA files
	CAData []byte // PEM and/or concatenated DER certificates

	CertFile    string // client certificate chain (PEM); may also hold the key
	KeyFile     string // its private key (PEM), when not in CertFile
	KeyPassword []byte // for an encrypted key
	CertData    []byte // or the chain and key in memory (PEM)
	KeyData     []byte

	MinVersion uint16 // tls.VersionTLS12 etc.; 0 = TLS 1.2
	MaxVersion uint16 // 0 = TLS 1.3

	ALPN       []string // protocols to offer, in order
	KeyLogFile string   // NSS key log, appended to (SSLKEYLOGFILE format)
	Ciphers    string   // OpenSSL cipher names for TLS 1.2, colon-separated; "" = Go's defaults

	NoSessionCache bool // turn session resumption off
}

// RootsUsage says when the system's trusted roots are used.
type RootsUsage int

const (
	RootsAuto RootsUsage = iota // when no CAFile, CAPath or CAData is given
	RootsOn                     // always, beside any given CAs
	RootsOff                    // never
)

// tlsProfile is the prepared form of one set of TLSOptions: the parsed
// trust store and client certificate, a session cache shared by every
// connection made with the same options (which is what makes resumption
// work), and a base config cloned per connection.
type tlsProfile struct {
	base  *tls.Config
	roots *x509.CertPool
	opts  TLSOptions
}

var (
	profilesMu sync.Mutex
	profiles   = map[[32]byte]*tlsProfile{}
)

// profile returns the prepared profile for these options, making it once.
// Files are part of the key by name, size and modification time, so an
// edited CA file is read again.
func (o *TLSOptions) profile() (*tlsProfile, error) {
	key := o.key()
	profilesMu.Lock()
	p, ok := profiles[key]
	profilesMu.Unlock()
	if ok {
		return p, nil
	}
	p, err := newProfile(*o)
	if err != nil {
		return nil, err
	}
	profilesMu.Lock()
	if old, ok := profiles[key]; ok {
		p = old
	} else {
		if len(profiles) >= 256 {
			clear(profiles) // bounded: a program making endless distinct contexts
		}
		profiles[key] = p
	}
	profilesMu.Unlock()
	return p, nil
}

func (o *TLSOptions) key() [32]byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	file := func(path string) {
		field([]byte(path))
		if path == "" {
			return
		}
		if st, err := os.Stat(path); err == nil {
			field([]byte(fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())))
		}
	}
	field([]byte(fmt.Sprintf("%t/%t/%d/%d/%d/%t", o.VerifyNone, o.NoCheckHostname, o.SystemRoots,
		o.MinVersion, o.MaxVersion, o.NoSessionCache)))
	file(o.CAFile)
	file(o.CAPath)
	field(o.CAData)
	file(o.CertFile)
	file(o.KeyFile)
	field(o.KeyPassword)
	field(o.CertData)
	field(o.KeyData)
	for _, p := range o.ALPN {
		field([]byte(p))
	}
	field([]byte(o.KeyLogFile))
	field([]byte(o.Ciphers))
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

func newProfile(o TLSOptions) (*tlsProfile, error) {
	roots, err := o.trustStore()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		// Verification is done in verifyConnection, so that the host name
		// rules and the error texts are asyncio's.
		InsecureSkipVerify: true,
		MinVersion:         o.MinVersion,
		MaxVersion:         o.MaxVersion,
		NextProtos:         append([]string(nil), o.ALPN...),
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < cfg.MinVersion {
		return nil, &TLSError{Reason: "NO_PROTOCOLS_AVAILABLE", Text: "no protocols available"}
	}
	if !o.NoSessionCache {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	if o.Ciphers != "" {
		suites, err := cipherSuites(o.Ciphers)
		if err != nil {
			return nil, err
		}
		cfg.CipherSuites = suites
	}
	if cert, ok, err := o.clientCertificate(); err != nil {
		return nil, err
	} else if ok {
		// Send it whatever CAs the server names, as OpenSSL does: crypto/tls
		// would otherwise send no certificate when its issuer is not in the
		// server's list, and the server would see none at all.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		}
	}
	if o.KeyLogFile != "" {
		f, err := os.OpenFile(o.KeyLogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, osErrorFrom(err)
		}
		cfg.KeyLogWriter = &syncWriter{f: f}
	}
	return &tlsProfile{base: cfg, roots: roots, opts: o}, nil
}

// trustStore builds the pool of trusted roots.
func (o *TLSOptions) trustStore() (*x509.CertPool, error) {
	if o.VerifyNone {
		return nil, nil
	}
	given := o.CAFile != "" || o.CAPath != "" || len(o.CAData) > 0
	var pool *x509.CertPool
	if o.SystemRoots == RootsOn || (o.SystemRoots == RootsAuto && !given) {
		sys, err := x509.SystemCertPool()
		if err != nil {
			sys = x509.NewCertPool()
		}
		pool = sys
	} else {
		pool = x509.NewCertPool()
	}
	if o.CAFile != "" {
		data, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, osErrorFrom(err)
		}
		if n := addCerts(pool, data); n == 0 {
			return nil, &TLSError{Reason: "NO_CERTIFICATE_OR_CRL_FOUND", Text: "no certificate or crl found"}
		}
	}
	if o.CAPath != "" {
		entries, err := os.ReadDir(o.CAPath)
		if err != nil {
			return nil, osErrorFrom(err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
				if data, err := os.ReadFile(filepath.Join(o.CAPath, e.Name())); err == nil {
					addCerts(pool, data)
				}
			}
		}
	}
	if len(o.CAData) > 0 {
		if n := addCerts(pool, o.CAData); n == 0 {
			return nil, &TLSError{Reason: "NO_CERTIFICATE_OR_CRL_FOUND", Text: "no certificate or crl found"}
		}
	}
	return pool, nil
}

// addCerts adds PEM certificates, or concatenated DER certificates, and
// reports how many it added.
func addCerts(pool *x509.CertPool, data []byte) int {
	n := 0
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			pool.AddCert(c)
			n++
		}
	}
	if sawPEM {
		return n
	}
	certs, err := x509.ParseCertificates(data)
	if err != nil {
		return 0
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return len(certs)
}

// clientCertificate loads the client certificate chain and key, if any.
func (o *TLSOptions) clientCertificate() (tls.Certificate, bool, error) {
	certPEM, keyPEM := o.CertData, o.KeyData
	if o.CertFile != "" {
		data, err := os.ReadFile(o.CertFile)
		if err != nil {
			return tls.Certificate{}, false, osErrorFrom(err)
		}
		certPEM = data
	}
	if o.KeyFile != "" {
		data, err := os.ReadFile(o.KeyFile)
		if err != nil {
			return tls.Certificate{}, false, osErrorFrom(err)
		}
		keyPEM = data
	}
	if len(certPEM) == 0 {
		return tls.Certificate{}, false, nil
	}
	if len(keyPEM) == 0 {
		keyPEM = certPEM // the key may sit in the certificate file, as OpenSSL allows
	}
	keyPEM, err := decryptKeyPEM(keyPEM, o.KeyPassword)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, false, &TLSError{Reason: "PEM_LIB", Text: "PEM lib", Err: err}
	}
	return cert, true, nil
}

// verifyConnection checks the peer's chain against the profile's roots and,
// when host is set, the host name (an IP literal against the IP SANs), as
// OpenSSL does for Python.
func (p *tlsProfile) verifyConnection(host string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if p.opts.VerifyNone {
			return nil
		}
		if len(cs.PeerCertificates) == 0 {
			return &CertVerifyError{Code: 1, Message: "unspecified certificate verification error"}
		}
		now := time.Now()
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: p.roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(opts); err != nil {
			var ua x509.UnknownAuthorityError
			if errors.As(err, &ua) {
				// crypto/tls will not build a chain through a non-CA
				// issuer; OpenSSL builds it and then calls the issuer an
				// invalid CA (X509_V_ERR_INVALID_CA).
				for i := 1; i < len(cs.PeerCertificates); i++ {
					child, issuer := cs.PeerCertificates[i-1], cs.PeerCertificates[i]
					if issuer.IsCA || string(child.RawIssuer) != string(issuer.RawSubject) ||
						issuer.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature) != nil {
						continue
					}
					asLeaf := opts
					asLeaf.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
					if _, ierr := issuer.Verify(asLeaf); ierr == nil {
						return &CertVerifyError{Code: 79, Message: "invalid CA certificate", Err: err}
					}
				}
			}
			var ci x509.CertificateInvalidError
			if errors.As(err, &ci) && ci.Reason == x509.Expired {
				// Go checks the dates first; OpenSSL builds the chain and
				// checks purposes and the host name before the dates. So
				// a date error gives way to what a check at a time when
				// the leaf is valid finds, then to a host name mismatch.
				at := opts
				at.CurrentTime = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
				var ci2 x509.CertificateInvalidError
				if _, err2 := leaf.Verify(at); err2 != nil && !(errors.As(err2, &ci2) && ci2.Reason == x509.Expired) {
					return verifyError(err2, cs.PeerCertificates, host, now)
				}
				if host != "" {
					if herr := leaf.VerifyHostname(host); herr != nil {
						return verifyError(herr, cs.PeerCertificates, host, now)
					}
				}
			}
			return verifyError(err, cs.PeerCertificates, host, now)
		}
		if host != "" {
			if err := leaf.VerifyHostname(host); err != nil {
				return verifyError(err, cs.PeerCertificates, host, now)
			}
		}
		return nil
	}
}

// config is the per-connection config: the profile's, with this
// connection's server name. An empty name sends no SNI, as does an IP
// literal (crypto/tls never sends SNI for IP addresses).
func (p *tlsProfile) config(serverName string, checkHost bool) *tls.Config {
	cfg := p.base.Clone()
	cfg.ServerName = serverName
	host := ""
	if checkHost && !p.opts.NoCheckHostname {
		host = serverName
	}
	cfg.VerifyConnection = p.verifyConnection(host)
	return cfg
}

// syncWriter serialises key log lines from concurrent handshakes.
type syncWriter struct {
	mu sync.Mutex
	f  *os.File
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Write(b)
}

// cipherSuites maps OpenSSL TLS 1.2 cipher names to crypto/tls suites.
// TLS 1.3 suites are not configurable in Go and are always on.
func cipherSuites(list string) ([]uint16, error) {
	byName := map[string]uint16{}
	for _, s := range tls.CipherSuites() {
		if name, ok := opensslCipherNames[s.Name]; ok {
			byName[name] = s.ID
		}
	}
	var ids []uint16
	seen := map[uint16]bool{}
	for _, name := range splitCipherList(list) {
		if id, ok := byName[name]; ok && !seen[id] {
			ids = append(ids, id)
			seen[id] = true
		}
	}
	if len(ids) == 0 {
		return nil, &TLSError{Reason: "NO_CIPHER_MATCH", Text: "No cipher can be selected."}
	}
	return ids, nil
}

func splitCipherList(list string) []string {
	return strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' })
}

// opensslCipherNames maps crypto/tls suite names to OpenSSL's.
var opensslCipherNames = map[string]string{
	"TLS_AES_128_GCM_SHA256":                        "TLS_AES_128_GCM_SHA256",
	"TLS_AES_256_GCM_SHA384":                        "TLS_AES_256_GCM_SHA384",
	"TLS_CHACHA20_POLY1305_SHA256":                  "TLS_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256":       "ECDHE-ECDSA-AES128-GCM-SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384":       "ECDHE-ECDSA-AES256-GCM-SHA384",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256":         "ECDHE-RSA-AES128-GCM-SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384":         "ECDHE-RSA-AES256-GCM-SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256":   "ECDHE-RSA-CHACHA20-POLY1305",
	"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA":          "ECDHE-ECDSA-AES128-SHA",
	"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA":          "ECDHE-ECDSA-AES256-SHA",
	"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA":            "ECDHE-RSA-AES128-SHA",
	"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA":            "ECDHE-RSA-AES256-SHA",
	"TLS_RSA_WITH_AES_128_GCM_SHA256":               "AES128-GCM-SHA256",
	"TLS_RSA_WITH_AES_256_GCM_SHA384":               "AES256-GCM-SHA384",
	"TLS_RSA_WITH_AES_128_CBC_SHA":                  "AES128-SHA",
	"TLS_RSA_WITH_AES_256_CBC_SHA":                  "AES256-SHA",
}

// cipherInfo is what Python's SSLObject.cipher() gives: OpenSSL's name,
// the protocol the suite belongs to, and the secret bits.
func cipherInfo(id uint16) (name, version string, bits int) {
	goName := tls.CipherSuiteName(id)
	name = goName
	if n, ok := opensslCipherNames[goName]; ok {
		name = n
	}
	switch {
	case id == tls.TLS_AES_128_GCM_SHA256 || id == tls.TLS_AES_256_GCM_SHA384 || id == tls.TLS_CHACHA20_POLY1305_SHA256:
		version = "TLSv1.3"
	default:
		version = "TLSv1.2"
		if containsAny(goName, "_CBC_SHA") && !containsAny(goName, "SHA256", "SHA384") {
			version = "TLSv1.0"
			if strings.HasPrefix(goName, "TLS_RSA_") {
				version = "SSLv3" // OpenSSL's min_tls for AES128-SHA and AES256-SHA
			}
		}
	}
	bits = 128
	if containsAny(goName, "AES_256", "CHACHA20") {
		bits = 256
	}
	return name, version, bits
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// tlsVersionName is OpenSSL's name for a protocol version.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return ""
}

// errBadPassword is OpenSSL's failure for a key it cannot decrypt.
var errBadPassword = &TLSError{Reason: "BAD_DECRYPT", Text: "bad decrypt"}
