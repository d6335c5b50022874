package core_test

// Test PKI and TLS peers for the TLS tests. Every key and certificate is
// made at test time and lives in memory or in the test's temporary folder.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goconn/goconn/core"
)

// ---------------------------------------------------------------------------
// certificates

// certKey is a certificate with its key, in every form the tests need.
type certKey struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte // PKCS#8 "PRIVATE KEY"
	chain   [][]byte
}

// tlsCert is the certificate (with any chain) for a crypto/tls peer.
func (c *certKey) tlsCert() tls.Certificate {
	return tls.Certificate{Certificate: c.chain, PrivateKey: c.key, Leaf: c.cert}
}

// certSpec describes a certificate to issue. The zero value is a server
// certificate for "localhost" and 127.0.0.1, valid now.
type certSpec struct {
	cn        string
	dns       []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
	eku       []x509.ExtKeyUsage
	rsa       bool
	noSANs    bool
}

var serial atomic.Int64

func newKey(t testing.TB, useRSA bool) crypto.Signer {
	t.Helper()
	if useRSA {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue makes a certificate signed by parent, or self-signed when parent is
// nil.
func issue(t testing.TB, s certSpec, parent *certKey) *certKey {
	t.Helper()
	now := time.Now()
	if s.notBefore.IsZero() {
		s.notBefore = now.Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = now.Add(24 * time.Hour)
	}
	if s.cn == "" {
		s.cn = "localhost"
	}
	if !s.isCA && !s.noSANs && s.dns == nil && s.ips == nil {
		s.dns = []string{"localhost"}
		s.ips = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1) + now.UnixNano()),
		Subject:      pkix.Name{CommonName: s.cn, Organization: []string{"goconn tests"}},
		DNSNames:     s.dns,
		IPAddresses:  s.ips,
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		ExtKeyUsage:  s.eku,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if s.isCA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else if s.eku == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if s.rsa {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	key := newKey(t, s.rsa)
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &certKey{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
		chain:   [][]byte{der},
	}
}

// testPKI is one CA with the certificates the tests use.
type testPKI struct {
	ca       *certKey // the trusted CA
	server   *certKey // localhost and 127.0.0.1, signed by ca
	localDNS *certKey // localhost only, no IP SAN
	other    *certKey // other.example only
	expired  *certKey
	client   *certKey // clientAuth, signed by ca
	self     *certKey // self-signed, localhost and 127.0.0.1
	strange  *certKey // signed by a CA nobody trusts
	unknown  *certKey // that CA
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	p.ca = issue(t, certSpec{cn: "goconn test CA", isCA: true}, nil)
	p.server = issue(t, certSpec{}, p.ca)
	p.localDNS = issue(t, certSpec{dns: []string{"localhost"}}, p.ca)
	p.other = issue(t, certSpec{cn: "other.example", dns: []string{"other.example"}}, p.ca)
	p.expired = issue(t, certSpec{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)}, p.ca)
	p.client = issue(t, certSpec{cn: "goconn client", noSANs: true, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, p.ca)
	p.self = issue(t, certSpec{}, nil)
	p.unknown = issue(t, certSpec{cn: "nobody's CA", isCA: true}, nil)
	p.strange = issue(t, certSpec{}, p.unknown)
	return p
}

// trust is the client's TLSOptions trusting the test CA.
func (p *testPKI) trust() *core.TLSOptions {
	return &core.TLSOptions{CAData: p.ca.certPEM}
}

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.cert)
	return pool
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// opensslPath is the openssl binary, or the test is skipped.
func opensslPath(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	return path
}

// openssl runs the openssl command with stdin and returns its stdout.
func openssl(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(opensslPath(t), args...)
	cmd.Stdin = strings.NewReader(string(stdin))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// ---------------------------------------------------------------------------
// crypto/tls servers

// tlsServer is a crypto/tls server on 127.0.0.1. Each accepted connection
// does the handshake and then runs the handler; the connection is closed
// when the handler returns.
type tlsServer struct {
	port  int
	snis  chan string   // the SNI of each ClientHello ("" for none)
	hs    chan error    // the server's handshake result, per connection
	peers chan [][]byte // the client's certificate chain, per handshake
	mu    sync.Mutex
	open  []net.Conn
	wg    sync.WaitGroup
}

func startTLSServer(t *testing.T, cfg *tls.Config, handle func(c *tls.Conn)) *tlsServer {
	t.Helper()
	ln, port := listen(t)
	s := &tlsServer{port: port, snis: make(chan string, 64), hs: make(chan error, 64),
		peers: make(chan [][]byte, 64)}
	cfg = cfg.Clone()
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		s.snis <- h.ServerName
		return nil, nil
	}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		finished := make(chan struct{})
		go func() { s.wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Log("TLS server handlers still running at the end of the test")
		}
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open = append(s.open, raw)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer raw.Close()
				_ = raw.SetDeadline(time.Now().Add(3 * waitTimeout))
				c := tls.Server(raw, cfg)
				err := c.Handshake()
				s.hs <- err
				if err != nil {
					return
				}
				var chain [][]byte
				for _, pc := range c.ConnectionState().PeerCertificates {
					chain = append(chain, pc.Raw)
				}
				s.peers <- chain
				// Closing the TLS connection sends the server's close_notify.
				defer c.Close()
				if handle != nil {
					handle(c)
				}
			}()
		}
	}()
	return s
}

// serverConfig is a TLS server config with one certificate.
func serverConfig(ck *certKey) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ck.tlsCert()}}
}

// sni returns the SNI of the next handshake.
func (s *tlsServer) sni(t *testing.T) string {
	t.Helper()
	select {
	case name := <-s.snis:
		return name
	case <-time.After(waitTimeout):
		t.Fatal("no ClientHello reached the server")
	}
	return ""
}

// handshake returns the server's result of the next handshake.
func (s *tlsServer) handshake(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.hs:
		return err
	case <-time.After(waitTimeout):
		t.Fatal("the server saw no handshake")
	}
	return nil
}

// echoHandler echoes until the client's close_notify, then closes (which
// sends the server's close_notify).
func echoHandler(c *tls.Conn) {
	buf := make([]byte, 64*1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// tlsOpts is a TLS request for host on the server's port; every host name
// resolves to 127.0.0.1.
func tlsOpts(host string, port int, o *core.TLSOptions) core.Options {
	opts := tcpOpts(host, port)
	opts.Resolver = staticResolver{tcpInfo("127.0.0.1", port)}
	opts.TLS = o
	return opts
}

// ---------------------------------------------------------------------------
// raw peers for the handshake failure cases

// readClientHello reads one whole TLS record (the ClientHello) from c.
func readClientHello(t *testing.T, c net.Conn) []byte {
	t.Helper()
	hdr := readN(t, c, 5)
	if hdr[0] != 0x16 {
		t.Fatalf("first record type %#x, want a handshake record", hdr[0])
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	return append(hdr, readN(t, c, n)...)
}

// goroutinesRunning counts the goroutines whose stack contains fn and,
// when state is not "", whose status starts with state.
func goroutinesRunning(fn, state string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, fn) {
			continue
		}
		if state != "" {
			i, j := strings.IndexByte(g, '['), strings.IndexByte(g, ']')
			if i < 0 || j < i || !strings.HasPrefix(g[i+1:j], state) {
				continue
			}
		}
		count++
	}
	return count
}

// ---------------------------------------------------------------------------
// openssl s_server

// opensslServer starts `openssl s_server` on 127.0.0.1 with the given extra
// arguments and returns its port. It is killed when the test ends.
func opensslServer(t *testing.T, dir string, srv *certKey, args ...string) int {
	t.Helper()
	bin := opensslPath(t)
	certFile := writeFile(t, dir, "s_server.pem", srv.certPEM)
	keyFile := writeFile(t, dir, "s_server.key", srv.keyPEM)
	full := append([]string{"s_server", "-accept", "127.0.0.1:0", "-cert", certFile, "-key", keyFile, "-naccept", "1"}, args...)
	cmd := exec.Command(bin, full...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// s_server prints "ACCEPT 127.0.0.1:PORT" once it listens.
	portc := make(chan int, 1)
	go func() {
		var line []byte
		b := make([]byte, 1)
		for {
			if _, err := stdout.Read(b); err != nil {
				close(portc)
				return
			}
			if b[0] != '\n' {
				line = append(line, b[0])
				continue
			}
			if s, ok := strings.CutPrefix(string(line), "ACCEPT "); ok {
				if i := strings.LastIndexByte(s, ':'); i >= 0 {
					if p, err := strconv.Atoi(s[i+1:]); err == nil {
						portc <- p
						// Keep draining so that s_server never blocks on its output.
						buf := make([]byte, 4096)
						for {
							if _, err := stdout.Read(buf); err != nil {
								return
							}
						}
					}
				}
			}
			line = line[:0]
		}
	}()
	select {
	case p, ok := <-portc:
		if !ok {
			t.Fatal("openssl s_server exited before listening")
		}
		return p
	case <-time.After(waitTimeout):
		t.Fatal("openssl s_server did not start")
	}
	return 0
}

// asErr is errors.As with a fresh target, for table checks.
func asErr[T error](err error) (T, bool) {
	var target T
	ok := errors.As(err, &target)
	return target, ok
}
