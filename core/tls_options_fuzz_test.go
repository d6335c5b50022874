package core

// Fuzz tests of the CA data parser (addCerts and trustStore in
// tls_options.go) and of the OpenSSL cipher list parser (cipherSuites).

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"
)

var (
	fuzzCertsOnce sync.Once
	fuzzCerts     []*x509.Certificate
)

// fuzzCACerts are a few self-signed CA certificates, made once.
func fuzzCACerts(t testing.TB) []*x509.Certificate {
	fuzzCertsOnce.Do(func() {
		for i := 0; i < 5; i++ {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return
			}
			tmpl := &x509.Certificate{
				SerialNumber:          big.NewInt(int64(i + 1)),
				Subject:               pkix.Name{CommonName: fmt.Sprintf("fuzz CA %d", i)},
				NotBefore:             time.Now().Add(-time.Hour),
				NotAfter:              time.Now().Add(time.Hour),
				IsCA:                  true,
				BasicConstraintsValid: true,
				KeyUsage:              x509.KeyUsageCertSign,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
			if err != nil {
				return
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return
			}
			fuzzCerts = append(fuzzCerts, c)
		}
	})
	if len(fuzzCerts) != 5 {
		t.Fatal("no test certificates")
	}
	return fuzzCerts
}

// FuzzAddCerts: random bytes (seeded with real PEM and DER) never panic;
// the count is never negative nor more than the certificates that could
// be there, the pool holds at most that many, and trustStore turns a zero
// count into OpenSSL's error.
func FuzzAddCerts(f *testing.F) {
	certs := fuzzCACerts(f)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw}))
	f.Add(append(slices.Clone(certs[0].Raw), certs[1].Raw...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("junk"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		pool := x509.NewCertPool()
		n := addCerts(pool, data)
		if n < 0 {
			t.Fatalf("count %d", n)
		}
		pemCerts, sawPEM := 0, false
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			sawPEM = true
			if b.Type == "CERTIFICATE" {
				pemCerts++
			}
		}
		if sawPEM && n > pemCerts {
			t.Fatalf("%d certificates added from %d CERTIFICATE blocks", n, pemCerts)
		}
		if !sawPEM && n > len(data)/4 {
			t.Fatalf("%d DER certificates in %d bytes", n, len(data))
		}
		//nolint:staticcheck // Subjects is fine for a pool made here
		if got := len(pool.Subjects()); got > n {
			t.Fatalf("the pool holds %d certificates, %d were counted", got, n)
		}
		if len(data) == 0 {
			return
		}
		o := TLSOptions{CAData: data, SystemRoots: RootsOff}
		roots, err := o.trustStore()
		var te *TLSError
		switch {
		case n == 0:
			if !errors.As(err, &te) || te.Reason != "NO_CERTIFICATE_OR_CRL_FOUND" || err.Error() != (&TLSError{Reason: "NO_CERTIFICATE_OR_CRL_FOUND", Text: "no certificate or crl found"}).Error() {
				t.Fatalf("no certificate: got %v", err)
			}
		case err != nil:
			t.Fatalf("%d certificates: %v", n, err)
		case !roots.Equal(pool):
			t.Fatal("trustStore's pool differs from addCerts'")
		}
	})
}

// FuzzTrustStoreCAData: every valid certificate the test puts in CA data
// is loaded, whatever the order, repeats and form: PEM blocks with other
// blocks and text around them, or concatenated DER.
func FuzzTrustStoreCAData(f *testing.F) {
	f.Add([]byte{0, 1, 2}, false, uint8(0))
	f.Add([]byte{4, 4, 3}, true, uint8(0))
	f.Add([]byte{0x10, 0x21, 0x32, 0x43}, false, uint8(255))
	f.Add([]byte{}, false, uint8(1))
	f.Fuzz(func(t *testing.T, pick []byte, der bool, noise uint8) {
		certs := fuzzCACerts(t)
		if len(pick) > 32 {
			pick = pick[:32]
		}
		var data []byte
		want := x509.NewCertPool()
		count := 0
		for i, p := range pick {
			c := certs[int(p)%len(certs)]
			want.AddCert(c)
			count++
			if der {
				data = append(data, c.Raw...)
				continue
			}
			switch (p >> 4) % 4 { // something before this certificate
			case 1:
				data = append(data, "Subject: text OpenSSL writes\n"...)
			case 2:
				data = append(data, pemBytes(&pem.Block{Type: "X509 CRL", Bytes: []byte{0x30, 0}})...)
			case 3:
				data = append(data, pemBytes(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{byte(i)}})...)
			}
			block := &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}
			if noise&1 != 0 {
				block.Headers = map[string]string{"Comment": "made by the fuzz test"}
			}
			data = append(data, pemBytes(block)...)
			if noise&2 != 0 {
				data = append(data, '\n')
			}
		}
		if !der && noise&4 != 0 {
			// A certificate block that does not parse is skipped.
			data = append(data, pemBytes(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}})...)
		}
		pool := x509.NewCertPool()
		if n := addCerts(pool, data); n != count {
			t.Fatalf("addCerts counted %d of %d certificates", n, count)
		}
		if !pool.Equal(want) {
			t.Fatal("the pool is not the certificates given")
		}
		o := TLSOptions{CAData: data, SystemRoots: RootsOff}
		roots, err := o.trustStore()
		if count == 0 {
			if err == nil && len(data) > 0 {
				t.Fatal("CA data with no certificate was accepted")
			}
			return
		}
		if err != nil || !roots.Equal(want) {
			t.Fatalf("trustStore: %v", err)
		}
		// Every certificate verifies against the loaded roots.
		for _, p := range pick {
			c := certs[int(p)%len(certs)]
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
				t.Fatalf("certificate %s does not verify: %v", c.Subject.CommonName, err)
			}
		}
	})
}

// FuzzCipherSuites: any cipher string never panics; the suites are the
// crypto/tls suites whose OpenSSL names the string lists, each once, in the
// order first listed; none is OpenSSL's NO_CIPHER_MATCH error.
func FuzzCipherSuites(f *testing.F) {
	f.Add("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
	f.Add("AES128-SHA, AES128-SHA AES256-SHA")
	f.Add("TLS_AES_128_GCM_SHA256")
	f.Add("HIGH:!aNULL")
	f.Add("")
	f.Add("::,, ")
	f.Fuzz(func(t *testing.T, list string) {
		ids, err := cipherSuites(list)
		names := splitCipherList(list)
		for _, n := range names {
			if n == "" || bytes.ContainsAny([]byte(n), ":, ") {
				t.Fatalf("split %q gave the name %q", list, n)
			}
		}
		byName := map[string]uint16{}
		for _, s := range tls.CipherSuites() {
			if name, ok := opensslCipherNames[s.Name]; ok {
				byName[name] = s.ID
			}
		}
		var want []uint16
		for _, n := range names {
			if id, ok := byName[n]; ok && !slices.Contains(want, id) {
				want = append(want, id)
			}
		}
		if len(want) == 0 {
			var te *TLSError
			if !errors.As(err, &te) || te.Reason != "NO_CIPHER_MATCH" || ids != nil {
				t.Fatalf("%q: got %v, %v; want NO_CIPHER_MATCH", list, ids, err)
			}
			return
		}
		if err != nil || !slices.Equal(ids, want) {
			t.Fatalf("%q: got %v, %v; want %v", list, ids, err, want)
		}
		for _, id := range ids {
			name, version, bits := cipherInfo(id)
			if byName[name] != id || version == "" || (bits != 128 && bits != 256) {
				t.Fatalf("cipherInfo(%#x) = %q, %q, %d", id, name, version, bits)
			}
		}
	})
}

func pemBytes(b *pem.Block) []byte { return pem.EncodeToMemory(b) }
