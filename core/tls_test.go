package core_test

// Loopback tests of create_connection(ssl=...) (spec 7): verification and
// its errors, host names and SNI, client certificates, ALPN, versions,
// resumption, the handshake and shutdown timeouts, the TLS transport's
// differences from TCP, late timeout validation, cancellation, and a large
// transfer. The peers are crypto/tls servers (and openssl s_server in a few
// cases) with certificates made at test time.

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goconn/goconn/core"
	"golang.org/x/sys/unix"
)

// sub is a fresh env of the same mode for a subtest (an env's waits must
// fail the test that runs them).
func (e *env) sub(t *testing.T) *env { return newEnv(t, e.loop != nil) }

// tls13Bits are the TLS 1.3 suites with their secret bits.
var tls13Bits = map[string]int{
	"TLS_AES_128_GCM_SHA256":       128,
	"TLS_AES_256_GCM_SHA384":       256,
	"TLS_CHACHA20_POLY1305_SHA256": 256,
}

// checkInfo checks the session description of a fresh, verified TLS 1.3
// connection to a server presenting leaf.
func checkInfo(t *testing.T, info *core.TLSInfo, leaf *certKey) {
	t.Helper()
	if info == nil {
		t.Fatal("TLSInfo() is nil on a TLS transport")
	}
	if info.Version != tls.VersionTLS13 || info.VersionName != "TLSv1.3" {
		t.Errorf("version %#x %q, want TLSv1.3", info.Version, info.VersionName)
	}
	if bits, ok := tls13Bits[info.Cipher]; !ok || info.CipherBits != bits || info.CipherProto != "TLSv1.3" {
		t.Errorf("cipher (%q, %q, %d), want an OpenSSL TLS 1.3 suite name", info.Cipher, info.CipherProto, info.CipherBits)
	}
	if len(info.PeerChain) != 1 || !bytes.Equal(info.PeerChain[0], leaf.cert.Raw) {
		t.Errorf("peer chain of %d certificates, want the server's certificate", len(info.PeerChain))
	}
	if !info.Verified || info.Resumed || info.Compression != "" || info.ALPN != "" {
		t.Errorf("verified %v resumed %v compression %q alpn %q", info.Verified, info.Resumed, info.Compression, info.ALPN)
	}
}

// TestTLSVerified: a connection verified against the test CA, given in each
// way TLSOptions allows: connection_made after the handshake, echo, the
// session description, and close(): close_notify, the peer's answer,
// eof_received, connection_lost(None) (spec 7.8, sslproto's _do_shutdown).
func TestTLSVerified(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		dir := t.TempDir()
		caFile := writeFile(t, dir, "ca.pem", p.ca.certPEM)
		caDir := filepath.Join(dir, "capath")
		if err := os.Mkdir(caDir, 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, caDir, "0001.pem", p.unknown.certPEM)
		writeFile(t, caDir, "README", []byte("not a certificate\n"))
		writeFile(t, caDir, "test-ca.pem", p.ca.certPEM)
		cases := []struct {
			name string
			opts *core.TLSOptions
		}{
			{"CAData PEM", &core.TLSOptions{CAData: p.ca.certPEM}},
			{"CAData DER", &core.TLSOptions{CAData: p.ca.cert.Raw}},
			{"CAData DER concatenated", &core.TLSOptions{CAData: append(append([]byte(nil), p.unknown.cert.Raw...), p.ca.cert.Raw...)}},
			{"CAData PEM bundle", &core.TLSOptions{CAData: append(append([]byte(nil), p.unknown.certPEM...), p.ca.certPEM...)}},
			{"CAFile", &core.TLSOptions{CAFile: caFile}},
			{"CAPath", &core.TLSOptions{CAPath: caDir}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				srv := startTLSServer(t, serverConfig(p.server), echoHandler)
				r := newRecorder(e)
				var infoAtMade *core.TLSInfo
				r.onMade = func(tr *core.Transport) { infoAtMade = tr.TLSInfo() }
				tr := e.connect(tlsOpts("localhost", srv.port, c.opts), r)
				if sni := srv.sni(t); sni != "localhost" {
					t.Errorf("SNI %q, want localhost", sni)
				}
				if err := srv.handshake(t); err != nil {
					t.Fatalf("server handshake: %v", err)
				}
				if infoAtMade == nil {
					t.Error("TLSInfo() was nil in connection_made: the handshake must be done by then")
				}
				info := tr.TLSInfo()
				checkInfo(t, info, p.server)
				if info.ServerName != "localhost" || !info.CheckedHost {
					t.Errorf("server name %q, checked %v", info.ServerName, info.CheckedHost)
				}
				if peer, ok := tr.Peername(); !ok || peer.Port != srv.port {
					t.Errorf("peername %v", peer)
				}
				if tr.IsClosing() || !tr.IsReading() {
					t.Error("fresh transport: closing or not reading")
				}

				msg := pattern(100000) // several TLS records
				if err := tr.Write(msg[:10]); err != nil {
					t.Fatal(err)
				}
				if err := tr.Writelines([][]byte{msg[10:40000], msg[40000:]}); err != nil {
					t.Fatal(err)
				}
				if got := r.waitData(len(msg)); !bytes.Equal(got, msg) {
					t.Fatalf("echoed data differs (%d bytes)", len(got))
				}

				tr.Close()
				// asyncio's TLS is_reading() looks at the pause flag only.
				if !tr.IsClosing() || !tr.IsReading() {
					t.Errorf("after Close: IsClosing %v, IsReading %v", tr.IsClosing(), tr.IsReading())
				}
				tr.Close() // idempotent
				if err := r.waitLost(); err != nil {
					t.Errorf("connection_lost(%v), want nil", err)
				}
				if got := r.Events(); got != "made data eof lost" {
					t.Errorf("events %q, want eof_received when the shutdown completes, then connection_lost", got)
				}
			})
		}
	})
}

// TestTLSVerifyFailures: the handshake fails with OpenSSL's verify code and
// text, as ssl.SSLCertVerificationError carries them; the protocol factory
// never runs and no callback is made (spec 7.6). When several things are
// wrong, OpenSSL's order decides: the chain, the purpose, the host name,
// and only then the validity period.
func TestTLSVerifyFailures(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		now := time.Now()
		expiredSelf := issue(t, certSpec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)}, nil)
		future := issue(t, certSpec{notBefore: now.Add(24 * time.Hour), notAfter: now.Add(48 * time.Hour)}, p.ca)
		clientOnly := issue(t, certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, p.ca)
		withRoot := *p.strange
		withRoot.chain = [][]byte{p.strange.cert.Raw, p.unknown.cert.Raw}
		nonCA := issue(t, certSpec{cn: "not a CA", noSANs: true}, p.ca)
		viaNonCA := issue(t, certSpec{}, nonCA)
		viaNonCA.chain = append(viaNonCA.chain, nonCA.cert.Raw)

		cases := []struct {
			name     string
			server   *certKey
			host     string
			sh       *string
			opts     *core.TLSOptions
			code     int
			msg      string
			hostname bool
		}{
			{"self-signed", p.self, "localhost", nil, nil, 18, "self-signed certificate", false},
			{"unknown CA", p.strange, "localhost", nil, nil, 20, "unable to get local issuer certificate", false},
			{"untrusted root in the chain", &withRoot, "localhost", nil, nil, 19, "self-signed certificate in certificate chain", false},
			{"expired", p.expired, "localhost", nil, nil, 10, "certificate has expired", false},
			{"not yet valid", future, "localhost", nil, nil, 9, "certificate is not yet valid", false},
			{"client-only purpose", clientOnly, "localhost", nil, nil, 26, "unsuitable certificate purpose", false},
			{"issued by a non-CA", viaNonCA, "localhost", nil, nil, 79, "invalid CA certificate", false},
			{"expired and self-signed", expiredSelf, "localhost", nil, nil, 18, "self-signed certificate", false},
			{"expired and wrong host", p.expired, "localhost", str("wronghost"), nil, 62, "Hostname mismatch, certificate is not valid for 'wronghost'.", true},
			{"server_hostname wronghost", p.server, "localhost", str("wronghost"), nil, 62, "Hostname mismatch, certificate is not valid for 'wronghost'.", true},
			{"host wronghost", p.server, "wronghost", nil, nil, 62, "Hostname mismatch, certificate is not valid for 'wronghost'.", true},
			{"IP literal without IP SAN", p.localDNS, "127.0.0.1", nil, nil, 64, "IP address mismatch, certificate is not valid for '127.0.0.1'.", true},
			{"no host check, self-signed", p.self, "localhost", str(""), nil, 18, "self-signed certificate", false},
			{"no host check, unknown CA", p.strange, "localhost", str(""), nil, 20, "unable to get local issuer certificate", false},
			{"NoCheckHostname, self-signed", p.self, "localhost", nil, &core.TLSOptions{CAData: p.ca.certPEM, NoCheckHostname: true}, 18, "self-signed certificate", false},
			{"NoCheckHostname, unknown CA", p.strange, "localhost", nil, &core.TLSOptions{CAData: p.ca.certPEM, NoCheckHostname: true}, 20, "unable to get local issuer certificate", false},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				srv := startTLSServer(t, serverConfig(c.server), nil)
				o := c.opts
				if o == nil {
					o = p.trust()
				}
				opts := tlsOpts(c.host, srv.port, o)
				opts.ServerHostname = c.sh
				res := e.fail(opts)
				cve, ok := asErr[*core.CertVerifyError](res.Err)
				if !ok {
					t.Fatalf("got %T %v, want *core.CertVerifyError", res.Err, res.Err)
				}
				if cve.Code != c.code || cve.Message != c.msg || cve.Hostname != c.hostname {
					t.Errorf("got code %d %q hostname %v, want %d %q %v", cve.Code, cve.Message, cve.Hostname, c.code, c.msg, c.hostname)
				}
				want := "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: " + c.msg + ""
				if res.Err.Error() != want {
					t.Errorf("Error() %q\nwant      %q", res.Err, want)
				}
				if cve.Unwrap() == nil {
					t.Error("the Go verification error is not kept")
				}
				// The client refused the certificate with an alert.
				if err := srv.handshake(t); err == nil {
					t.Error("the server's handshake succeeded")
				}
			})
		}
	})
}

// TestTLSAccepted: the cases where verification passes without a host name
// match, and what SNI is sent in each (spec 7.1-7.3).
func TestTLSAccepted(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		now := time.Now()
		awful := issue(t, certSpec{cn: "other.example", dns: []string{"other.example"},
			notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)}, nil)
		cases := []struct {
			name       string
			server     *certKey
			host       string
			sh         *string
			opts       *core.TLSOptions
			sni        string
			serverName string
			checked    bool
			verified   bool
		}{
			{"IP literal with IP SAN", p.server, "127.0.0.1", nil, nil, "", "127.0.0.1", true, true},
			{"server_hostname empty, other name", p.other, "localhost", str(""), nil, "", "", false, true},
			{"server_hostname set, other name, NoCheckHostname", p.other, "localhost", nil,
				&core.TLSOptions{CAData: p.ca.certPEM, NoCheckHostname: true}, "localhost", "localhost", false, true},
			{"server_hostname overrides host", p.other, "localhost", str("other.example"), nil, "other.example", "other.example", true, true},
			{"VerifyNone, expired self-signed other name", awful, "localhost", nil, &core.TLSOptions{VerifyNone: true}, "localhost", "localhost", false, false},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				srv := startTLSServer(t, serverConfig(c.server), echoHandler)
				o := c.opts
				if o == nil {
					o = p.trust()
				}
				opts := tlsOpts(c.host, srv.port, o)
				opts.ServerHostname = c.sh
				r := newRecorder(e)
				tr := e.connect(opts, r)
				if sni := srv.sni(t); sni != c.sni {
					t.Errorf("SNI %q, want %q", sni, c.sni)
				}
				info := tr.TLSInfo()
				if info.ServerName != c.serverName || info.CheckedHost != c.checked || info.Verified != c.verified {
					t.Errorf("server name %q checked %v verified %v, want %q %v %v",
						info.ServerName, info.CheckedHost, info.Verified, c.serverName, c.checked, c.verified)
				}
				if len(info.PeerChain) != 1 || !bytes.Equal(info.PeerChain[0], c.server.cert.Raw) {
					t.Error("peer chain is not the server's certificate")
				}
				if err := tr.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				if got := string(r.waitData(4)); got != "ping" {
					t.Errorf("echo %q", got)
				}
				tr.Close()
				if err := r.waitLost(); err != nil {
					t.Error(err)
				}
			})
		}
	})
}

// TestTLSClientCertificate: a server that requires a client certificate.
func TestTLSClientCertificate(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		dir := t.TempDir()
		certFile := writeFile(t, dir, "client.pem", p.client.certPEM)
		keyFile := writeFile(t, dir, "client.key", p.client.keyPEM)
		bothFile := writeFile(t, dir, "both.pem", append(append([]byte(nil), p.client.certPEM...), p.client.keyPEM...))
		require := func(maxVersion uint16) *tls.Config {
			cfg := serverConfig(p.server)
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
			cfg.ClientCAs = p.pool()
			cfg.MaxVersion = maxVersion
			return cfg
		}

		// TLS 1.3: the client's handshake is over once it has sent its
		// Finished; the server's certificate_required alert arrives after
		// connection_made, and ends the connection with an SSLError, as
		// Python with OpenSSL does ('made', then connection_lost(SSLError
		// TLSV13_ALERT_CERTIFICATE_REQUIRED)).
		t.Run("none, TLS 1.3", func(t *testing.T) {
			e := e.sub(t)
			srv := startTLSServer(t, require(0), nil)
			r := newRecorder(e)
			e.connect(tlsOpts("localhost", srv.port, p.trust()), r)
			if err := srv.handshake(t); err == nil {
				t.Error("the server accepted a client without a certificate")
			}
			err := r.waitLost()
			te, ok := asErr[*core.TLSError](err)
			if !ok || te.Reason != "TLSV13_ALERT_CERTIFICATE_REQUIRED" || te.Text != "tlsv13 alert certificate required" {
				t.Fatalf("connection_lost(%T %v), want the certificate_required alert; events %q", err, err, r.Events())
			}
			if got := r.Events(); got != "made lost" {
				t.Errorf("events %q", got)
			}
		})
		// TLS 1.2: the server's handshake_failure alert (crypto/tls sends the
		// same one as OpenSSL) comes during the handshake, which fails.
		t.Run("none, TLS 1.2", func(t *testing.T) {
			e := e.sub(t)
			srv := startTLSServer(t, require(tls.VersionTLS12), nil)
			res := e.fail(tlsOpts("localhost", srv.port, p.trust()))
			te, ok := asErr[*core.TLSError](res.Err)
			if !ok || te.Reason != "SSLV3_ALERT_HANDSHAKE_FAILURE" ||
				res.Err.Error() != "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure" {
				t.Fatalf("got %T %v", res.Err, res.Err)
			}
		})

		good := []struct {
			name string
			opts *core.TLSOptions
		}{
			{"CertFile and KeyFile", &core.TLSOptions{CAData: p.ca.certPEM, CertFile: certFile, KeyFile: keyFile}},
			{"CertFile holding the key", &core.TLSOptions{CAData: p.ca.certPEM, CertFile: bothFile}},
			{"CertData and KeyData", &core.TLSOptions{CAData: p.ca.certPEM, CertData: p.client.certPEM, KeyData: p.client.keyPEM}},
		}
		for _, c := range good {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				srv := startTLSServer(t, require(0), echoHandler)
				r := newRecorder(e)
				tr := e.connect(tlsOpts("localhost", srv.port, c.opts), r)
				checkClientAccepted(t, e, srv, r, tr, p.client)
			})
		}
	})
}

// checkClientAccepted checks that the server saw the client's certificate
// and that the connection works.
func checkClientAccepted(t *testing.T, e *env, srv *tlsServer, r *recorder, tr *core.Transport, client *certKey) {
	t.Helper()
	if err := srv.handshake(t); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	select {
	case chain := <-srv.peers:
		if len(chain) != 1 || !bytes.Equal(chain[0], client.cert.Raw) {
			t.Errorf("the server got %d client certificates, not ours", len(chain))
		}
	case <-time.After(waitTimeout):
		t.Fatal("no client certificate")
	}
	if err := tr.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := string(r.waitData(5)); got != "hello" {
		t.Errorf("echo %q", got)
	}
	tr.Close()
	if err := r.waitLost(); err != nil {
		t.Error(err)
	}
	if got := r.Events(); got != "made data eof lost" {
		t.Errorf("events %q", got)
	}
}

// TestTLSEncryptedKey: client keys encrypted by openssl, as PKCS#8
// (PBES2) and in the legacy "Proc-Type: 4,ENCRYPTED" form, with the right,
// a wrong and no password.
func TestTLSEncryptedKey(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		rsaClient := issue(t, certSpec{cn: "goconn rsa client", noSANs: true, rsa: true,
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, p.ca)
		dir := t.TempDir()
		plainEC := writeFile(t, dir, "ec.key", p.client.keyPEM)
		plainRSA := writeFile(t, dir, "rsa.key", rsaClient.keyPEM)
		keys := []struct {
			name   string
			client *certKey
			pem    []byte
			marker string
		}{
			{"PKCS#8 aes-256-cbc", p.client,
				openssl(t, nil, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", plainEC, "-passout", "pass:secret"), "ENCRYPTED PRIVATE KEY"},
			{"genpkey-style PKCS#8 RSA", rsaClient,
				openssl(t, nil, "pkey", "-aes256", "-in", plainRSA, "-passout", "pass:secret"), "ENCRYPTED PRIVATE KEY"},
			{"legacy RSA", rsaClient,
				openssl(t, nil, "rsa", "-aes256", "-traditional", "-in", plainRSA, "-passout", "pass:secret"), "Proc-Type: 4,ENCRYPTED"},
			{"legacy EC", p.client,
				openssl(t, nil, "ec", "-aes256", "-in", plainEC, "-passout", "pass:secret"), "Proc-Type: 4,ENCRYPTED"},
		}
		require := serverConfig(p.server)
		require.ClientAuth = tls.RequireAndVerifyClientCert
		require.ClientCAs = p.pool()
		for i, k := range keys {
			t.Run(k.name, func(t *testing.T) {
				if !strings.Contains(string(k.pem), k.marker) {
					t.Fatalf("openssl wrote no %q key:\n%s", k.marker, k.pem)
				}
				certFile := writeFile(t, dir, fmt.Sprintf("c%d.pem", i), k.client.certPEM)
				keyFile := writeFile(t, dir, fmt.Sprintf("k%d.pem", i), k.pem)
				opts := func(pw []byte) *core.TLSOptions {
					return &core.TLSOptions{CAData: p.ca.certPEM, CertFile: certFile, KeyFile: keyFile, KeyPassword: pw}
				}
				for _, pw := range [][]byte{[]byte("wrong"), nil} {
					e := e.sub(t)
					ln, port := listen(t)
					res := e.fail(tlsOpts("localhost", port, opts(pw)))
					te, ok := asErr[*core.TLSError](res.Err)
					if !ok || te.Reason != "BAD_DECRYPT" || te.Text != "bad decrypt" {
						t.Errorf("password %q: got %T %v, want BAD_DECRYPT", pw, res.Err, res.Err)
					}
					// It fails once the TCP connection is up, which is closed.
					if b := readAll(t, accept(t, ln)); len(b) != 0 {
						t.Errorf("the server got %d bytes", len(b))
					}
				}
				e := e.sub(t)
				srv := startTLSServer(t, require, echoHandler)
				r := newRecorder(e)
				tr := e.connect(tlsOpts("localhost", srv.port, opts([]byte("secret"))), r)
				checkClientAccepted(t, e, srv, r, tr, k.client)
			})
		}
	})
}

// TestTLSALPN: the offered protocols and what the server picks.
func TestTLSALPN(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		cases := []struct {
			name   string
			offer  []string
			server []string
			want   string
		}{
			{"server picks http/1.1", []string{"h2", "http/1.1"}, []string{"http/1.1"}, "http/1.1"},
			{"server picks h2", []string{"h2", "http/1.1"}, []string{"h2", "http/1.1"}, "h2"},
			{"server without ALPN", []string{"h2", "http/1.1"}, nil, ""},
			{"client without ALPN", nil, []string{"h2"}, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				cfg := serverConfig(p.server)
				cfg.NextProtos = c.server
				srv := startTLSServer(t, cfg, echoHandler)
				r := newRecorder(e)
				tr := e.connect(tlsOpts("localhost", srv.port, &core.TLSOptions{CAData: p.ca.certPEM, ALPN: c.offer}), r)
				if got := tr.TLSInfo().ALPN; got != c.want {
					t.Errorf("ALPN %q, want %q", got, c.want)
				}
				tr.Close()
				if err := r.waitLost(); err != nil {
					t.Error(err)
				}
			})
		}
		// crypto/tls servers refuse a client whose protocols they do not
		// speak, with the no_application_protocol alert.
		t.Run("no overlap", func(t *testing.T) {
			e := e.sub(t)
			cfg := serverConfig(p.server)
			cfg.NextProtos = []string{"spdy/3"}
			srv := startTLSServer(t, cfg, nil)
			res := e.fail(tlsOpts("localhost", srv.port, &core.TLSOptions{CAData: p.ca.certPEM, ALPN: []string{"h2", "http/1.1"}}))
			te, ok := asErr[*core.TLSError](res.Err)
			if !ok || te.Reason != "TLSV1_ALERT_NO_APPLICATION_PROTOCOL" || te.Text != "tlsv1 alert no application protocol" {
				t.Fatalf("got %T %v", res.Err, res.Err)
			}
		})
	})
}

// TestTLSVersions: TLS 1.2 and 1.3 servers, OpenSSL's names for versions
// and suites, and version mismatches.
func TestTLSVersions(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		rsaServer := issue(t, certSpec{rsa: true}, p.ca)
		cases := []struct {
			name    string
			server  *certKey
			min     uint16
			max     uint16
			suites  []uint16
			ciphers string
			version string
			names   map[string]int // acceptable suite names and their bits
		}{
			{"TLS 1.2 ECDSA", p.server, 0, tls.VersionTLS12, nil, "", "TLSv1.2", map[string]int{
				"ECDHE-ECDSA-AES128-GCM-SHA256": 128, "ECDHE-ECDSA-AES256-GCM-SHA384": 256, "ECDHE-ECDSA-CHACHA20-POLY1305": 256}},
			{"TLS 1.2 RSA", rsaServer, 0, tls.VersionTLS12, nil, "", "TLSv1.2", map[string]int{
				"ECDHE-RSA-AES128-GCM-SHA256": 128, "ECDHE-RSA-AES256-GCM-SHA384": 256, "ECDHE-RSA-CHACHA20-POLY1305": 256}},
			{"TLS 1.2 server suite", p.server, 0, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, "", "TLSv1.2",
				map[string]int{"ECDHE-ECDSA-AES256-GCM-SHA384": 256}},
			{"TLS 1.2 client Ciphers", p.server, 0, tls.VersionTLS12, nil, "ECDHE-ECDSA-CHACHA20-POLY1305", "TLSv1.2",
				map[string]int{"ECDHE-ECDSA-CHACHA20-POLY1305": 256}},
			{"TLS 1.2 CBC", rsaServer, 0, tls.VersionTLS12, nil, "ECDHE-RSA-AES256-SHA", "TLSv1.2",
				map[string]int{"ECDHE-RSA-AES256-SHA": 256}},
			{"TLS 1.3 only", p.server, tls.VersionTLS13, 0, nil, "", "TLSv1.3", tls13Bits},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				cfg := serverConfig(c.server)
				cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = c.min, c.max, c.suites
				srv := startTLSServer(t, cfg, echoHandler)
				r := newRecorder(e)
				tr := e.connect(tlsOpts("localhost", srv.port, &core.TLSOptions{CAData: p.ca.certPEM, Ciphers: c.ciphers}), r)
				info := tr.TLSInfo()
				if info.VersionName != c.version {
					t.Errorf("version %q, want %q", info.VersionName, c.version)
				}
				bits, ok := c.names[info.Cipher]
				if !ok || info.CipherBits != bits {
					t.Errorf("cipher %q with %d bits, want one of %v", info.Cipher, info.CipherBits, c.names)
				}
				// SSLObject.cipher()[1] is the suite's protocol: TLSv1.0
				// for the ECDHE CBC-SHA1 suites (OpenSSL's min_tls).
				wantProto := c.version
				if strings.HasSuffix(info.Cipher, "-SHA") {
					wantProto = "TLSv1.0"
				}
				if info.CipherProto != wantProto {
					t.Errorf("cipher protocol %q, want %q", info.CipherProto, wantProto)
				}
				if err := tr.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				r.waitData(1)
				tr.Close()
				if err := r.waitLost(); err != nil {
					t.Error(err)
				}
			})
		}

		mismatches := []struct {
			name         string
			serverMin    uint16
			serverMax    uint16
			clientMin    uint16
			clientMax    uint16
			reason, text string
		}{
			{"client 1.3 only, server 1.2 only", 0, tls.VersionTLS12, tls.VersionTLS13, 0,
				"TLSV1_ALERT_PROTOCOL_VERSION", "tlsv1 alert protocol version"},
			{"client 1.2 only, server 1.3 only", tls.VersionTLS13, 0, 0, tls.VersionTLS12,
				"TLSV1_ALERT_PROTOCOL_VERSION", "tlsv1 alert protocol version"},
		}
		for _, c := range mismatches {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				cfg := serverConfig(p.server)
				cfg.MinVersion, cfg.MaxVersion = c.serverMin, c.serverMax
				srv := startTLSServer(t, cfg, nil)
				res := e.fail(tlsOpts("localhost", srv.port, &core.TLSOptions{CAData: p.ca.certPEM, MinVersion: c.clientMin, MaxVersion: c.clientMax}))
				te, ok := asErr[*core.TLSError](res.Err)
				if !ok || te.Reason != c.reason || te.Text != c.text {
					t.Fatalf("got %T %v, want %s", res.Err, res.Err, c.reason)
				}
				if want := "[SSL: " + c.reason + "] " + c.text + ""; res.Err.Error() != want {
					t.Errorf("Error() %q, want %q", res.Err, want)
				}
			})
		}
	})
}

// TestTLSResumption: connections made with the same TLSOptions share a
// session cache, so the second one resumes; NoSessionCache turns it off.
func TestTLSResumption(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			for _, noCache := range []bool{false, true} {
				t.Run(fmt.Sprintf("%#x nocache=%v", v, noCache), func(t *testing.T) {
					e := e.sub(t)
					cfg := serverConfig(p.server)
					cfg.MaxVersion = v
					srv := startTLSServer(t, cfg, echoHandler)
					for i := 0; i < 3; i++ {
						// A fresh TLSOptions value each time: equal
						// options share the cache.
						o := &core.TLSOptions{CAData: append([]byte(nil), p.ca.certPEM...), NoSessionCache: noCache}
						r := newRecorder(e)
						tr := e.connect(tlsOpts("localhost", srv.port, o), r)
						// TLS 1.3 tickets come after the handshake: read
						// something so the client takes them in.
						if err := tr.Write([]byte("ping")); err != nil {
							t.Fatal(err)
						}
						r.waitData(4)
						info := tr.TLSInfo()
						want := i > 0 && !noCache
						if info.Resumed != want {
							t.Errorf("connection %d: resumed %v, want %v", i, info.Resumed, want)
						}
						if len(info.PeerChain) != 1 || !bytes.Equal(info.PeerChain[0], p.server.cert.Raw) || !info.Verified {
							t.Errorf("connection %d: peer chain or verified wrong on a resumed session", i)
						}
						tr.Close()
						if err := r.waitLost(); err != nil {
							t.Error(err)
						}
					}
				})
			}
		}
	})
}

// TestTLSHandshakeTimeout: a server that accepts and never answers. The
// handshake is aborted after ssl_handshake_timeout with asyncio's
// ConnectionAbortedError text, the socket is closed, and no callback runs
// (spec 7.5).
func TestTLSHandshakeTimeout(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		ln, port := listen(t)
		opts := tlsOpts("localhost", port, p.trust())
		opts.SSLHandshakeTimeout = f64(0.3)
		start := time.Now()
		pend := e.start(opts, nil)
		c := accept(t, ln)
		readClientHello(t, c)
		res := pend.wait()
		elapsed := time.Since(start)
		hte, ok := asErr[*core.HandshakeTimeoutError](res.Err)
		if !ok || hte.Timeout != 0.3 {
			t.Fatalf("got %T %v", res.Err, res.Err)
		}
		if want := "SSL handshake is taking longer than 0.3 seconds: aborting the connection"; res.Err.Error() != want {
			t.Errorf("Error() %q, want %q", res.Err, want)
		}
		if elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
			t.Errorf("failed after %v, want 0.3 s", elapsed)
		}
		if b := readAll(t, c); len(b) != 0 {
			t.Errorf("the server got %d more bytes", len(b))
		}
	})
}

// TestTLSPeerClosesDuringHandshake: the server reads the ClientHello and
// closes (or resets): ConnectionResetError with no message (spec 7.7).
func TestTLSPeerClosesDuringHandshake(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		for _, reset := range []bool{false, true} {
			t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
				e := e.sub(t)
				ln, port := listen(t)
				pend := e.start(tlsOpts("localhost", port, p.trust()), nil)
				c := accept(t, ln)
				readClientHello(t, c)
				if reset {
					_ = c.SetLinger(0)
				}
				c.Close()
				res := pend.wait()
				ce, ok := asErr[*core.ConnError](res.Err)
				if !ok || ce.Errno != syscall.ECONNRESET || ce.Text != "" || res.Err.Error() != "" {
					t.Fatalf("got %T %#v", res.Err, res.Err)
				}
			})
		}
	})
}

// TestTLSNotTLS: a peer that answers in plain text.
func TestTLSNotTLS(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		ln, port := listen(t)
		pend := e.start(tlsOpts("localhost", port, p.trust()), nil)
		c := accept(t, ln)
		readClientHello(t, c)
		if _, err := c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		res := pend.wait()
		want := "[SSL: WRONG_VERSION_NUMBER] wrong version number"
		if te, ok := asErr[*core.TLSError](res.Err); !ok || te.Reason != "WRONG_VERSION_NUMBER" || res.Err.Error() != want {
			t.Fatalf("got %T %v, want %s", res.Err, res.Err, want)
		}
	})
}

// TestTLSShutdownTimeout: after close(), a peer that never answers
// close_notify: connection_lost(TimeoutError('SSL shutdown timed out'))
// after ssl_shutdown_timeout, with no eof_received (spec 7.8).
func TestTLSShutdownTimeout(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		for _, reads := range []bool{false, true} {
			t.Run(fmt.Sprintf("server reads=%v", reads), func(t *testing.T) {
				e := e.sub(t)
				sawNotify := make(chan error, 1)
				done := make(chan struct{})
				srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
					if _, err := c.Write([]byte("HI")); err != nil {
						return
					}
					if reads {
						_, err := io.Copy(io.Discard, c)
						sawNotify <- err
					}
					<-done // never answer, never close
				})
				t.Cleanup(func() { close(done) }) // runs before the server's cleanup
				opts := tlsOpts("localhost", srv.port, p.trust())
				opts.SSLShutdownTimeout = f64(0.3)
				r := newRecorder(e)
				tr := e.connect(opts, r)
				r.waitData(2)
				start := time.Now()
				tr.Close()
				err := r.waitLost()
				elapsed := time.Since(start)
				if err != core.ErrShutdownTimeout {
					t.Fatalf("connection_lost(%T %v), want ErrShutdownTimeout", err, err)
				}
				if te, ok := asErr[*core.TimeoutError](err); !ok || te.Error() != "SSL shutdown timed out" {
					t.Errorf("got %#v", err)
				}
				if got := r.Events(); got != "made data lost" {
					t.Errorf("events %q", got)
				}
				if elapsed < 290*time.Millisecond || elapsed > 5*time.Second {
					t.Errorf("lost after %v, want 0.3 s", elapsed)
				}
				if reads {
					select {
					case err := <-sawNotify:
						if err != nil {
							t.Errorf("the server did not get a clean close_notify: %v", err)
						}
					case <-time.After(waitTimeout):
						t.Error("the server never got close_notify")
					}
				}
			})
		}
	})
}

// TestTLSPeerCloseNotify: the peer's close_notify while the connection is
// open: eof_received (its result ignored: TLS cannot half-close), our
// close_notify, connection_lost(None).
func TestTLSPeerCloseNotify(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprintf("eof_received returns %v", keep), func(t *testing.T) {
				e := e.sub(t)
				answer := make(chan error, 1)
				srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
					if _, err := c.Write([]byte("bye")); err != nil {
						return
					}
					if err := c.CloseWrite(); err != nil {
						answer <- err
						return
					}
					_, err := io.Copy(io.Discard, c)
					answer <- err
				})
				r := newRecorder(e)
				r.keepOpen = keep
				tr := e.connect(tlsOpts("localhost", srv.port, p.trust()), r)
				if err := r.waitLost(); err != nil {
					t.Errorf("connection_lost(%v), want nil", err)
				}
				if got := r.Events(); got != "made data eof lost" {
					t.Errorf("events %q", got)
				}
				if got := string(r.Data()); got != "bye" {
					t.Errorf("data %q", got)
				}
				select {
				case err := <-answer:
					if err != nil {
						t.Errorf("the server did not get our close_notify: %v", err)
					}
				case <-time.After(waitTimeout):
					t.Error("the server never got our close_notify")
				}
				if !tr.IsClosing() {
					t.Error("not closing after connection_lost")
				}
				if err := tr.Write([]byte("late")); err != core.ErrWriteDropped {
					t.Errorf("write after connection_lost: %v", err)
				}
			})
		}
	})
}

// TestTLSTransportAPI: what differs from TCP (spec 7.10): no write_eof,
// the 512 KiB / 128 KiB marks, a pause at size >= high, and writes dropped
// once closing.
func TestTLSTransportAPI(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		got := make(chan int64, 1)
		srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
			n, _ := io.Copy(io.Discard, c)
			got <- n
		})
		r := newRecorder(e)
		tr := e.connect(tlsOpts("localhost", srv.port, p.trust()), r)
		if tr.CanWriteEOF() {
			t.Error("CanWriteEOF is true on TLS")
		}
		if err := tr.WriteEOF(); !errors.Is(err, core.ErrNotSupported) {
			t.Errorf("WriteEOF: %v, want ErrNotSupported", err)
		}
		if low, high := tr.WriteBufferLimits(); low != 131072 || high != 524288 {
			t.Errorf("limits (%d, %d), want (131072, 524288)", low, high)
		}
		if err := tr.SetWriteBufferLimits(i64(4000), i64(100)); err != nil {
			t.Fatal(err)
		}
		if err := tr.SetWriteBufferLimits(nil, nil); err != nil {
			t.Fatal(err)
		}
		if low, high := tr.WriteBufferLimits(); low != 131072 || high != 524288 {
			t.Errorf("limits (%d, %d) after (None, None), want the TLS defaults", low, high)
		}
		if err := tr.SetWriteBufferLimits(i64(1000), nil); err != nil {
			t.Fatal(err)
		}
		if low, high := tr.WriteBufferLimits(); low != 250 || high != 1000 {
			t.Errorf("limits (%d, %d)", low, high)
		}

		// 999 bytes stay under the mark.
		if err := tr.Write(pattern(999)); err != nil {
			t.Fatal(err)
		}
		e.waitFor("an empty buffer", func() bool { return tr.WriteBufferSize() == 0 })
		e.pump(0)
		if r.Count("pause") != 0 {
			t.Fatal("paused below the high mark")
		}
		// Exactly 1000 bytes in the buffer: TLS pauses at size >= high.
		if err := tr.Write(pattern(1000)); err != nil {
			t.Fatal(err)
		}
		if e.loop != nil && r.Count("pause") != 1 {
			t.Fatal("pause_writing did not run inside write()")
		}
		e.waitFor("pause_writing", func() bool { return r.Count("pause") == 1 })
		e.waitFor("resume_writing", func() bool { return r.Count("resume") == 1 })

		tr.Close()
		if err := tr.Write([]byte("dropped")); err != core.ErrWriteDropped {
			t.Errorf("write after close: %v, want ErrWriteDropped", err)
		}
		if err := tr.Writelines([][]byte{[]byte("a"), []byte("b")}); err != core.ErrWriteDropped {
			t.Errorf("writelines after close: %v, want ErrWriteDropped", err)
		}
		if err := tr.Write(nil); err != nil {
			t.Errorf("empty write after close: %v", err)
		}
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
		if got := r.Events(); got != "made pause resume eof lost" {
			t.Errorf("events %q", got)
		}
		select {
		case n := <-got:
			if n != 1999 {
				t.Errorf("the server got %d bytes, want 1999", n)
			}
		case <-time.After(waitTimeout):
			t.Error("the server never finished")
		}
	})
}

// TestTLSAbort: abort() drops everything and ends at once.
func TestTLSAbort(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		readErr := make(chan error, 1)
		srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
			_, err := io.Copy(io.Discard, c)
			readErr <- err
		})
		r := newRecorder(e)
		tr := e.connect(tlsOpts("localhost", srv.port, p.trust()), r)
		if !tr.Abort() {
			t.Error("Abort returned false")
		}
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
		if got := r.Events(); got != "made lost" {
			t.Errorf("events %q", got)
		}
		select {
		case <-readErr:
		case <-time.After(waitTimeout):
			t.Error("the server never saw the connection end")
		}
	})
}

// TestTLSPeerReset: a reset after the handshake is an OSError.
func TestTLSPeerReset(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
			raw := c.NetConn().(*net.TCPConn)
			_ = raw.SetLinger(0)
			raw.Close() // no close_notify: a reset
		})
		r := newRecorder(e)
		e.connect(tlsOpts("localhost", srv.port, p.trust()), r)
		err := r.waitLost()
		if oe, ok := asErr[*core.OSError](err); !ok || oe.Errno != syscall.ECONNRESET || err.Error() != "[Errno 104] Connection reset by peer" {
			t.Fatalf("connection_lost(%T %v)", err, err)
		}
		if got := r.Events(); got != "made lost" {
			t.Errorf("events %q", got)
		}
	})
}

// TestTLSCloseWhileReadingPaused: close() with reading paused still
// completes the shutdown. asyncio keeps reading TLS records while the app
// is paused, so the peer's close_notify is seen (spec 7.10).
func TestTLSCloseWhileReadingPaused(t *testing.T) {
	const readLoop = "core.(*Transport).tlsReadLoop"
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		// The reader has read data while paused and waits to be resumed.
		t.Run("reader waiting", func(t *testing.T) {
			e := e.sub(t)
			send := make(chan struct{})
			srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
				<-send
				if _, err := c.Write([]byte("unread")); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
			})
			r := newRecorder(e)
			opts := tlsOpts("localhost", srv.port, p.trust())
			opts.SSLShutdownTimeout = f64(5)
			tr := e.connect(opts, r)
			tr.PauseReading()
			close(send)
			e.waitFor("the reader to wait for resume_reading", func() bool {
				return goroutinesRunning(readLoop, "sync.Cond.Wait") > 0
			})
			tr.Close()
			if err := r.waitLost(); err != nil {
				t.Errorf("connection_lost(%v), want nil", err)
			}
			if got := r.Events(); got != "made eof lost" {
				t.Errorf("events %q", got)
			}
		})
		// The peer's close_notify was read while paused and waits for
		// delivery. (asyncio 3.11 never completes this one: its SSLProtocol
		// defers the EOF until resume_reading and close() then does
		// nothing. goconn completes the shutdown.)
		t.Run("EOF queued", func(t *testing.T) {
			e := e.sub(t)
			send := make(chan struct{})
			srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
				<-send // then close: close_notify and FIN
			})
			r := newRecorder(e)
			opts := tlsOpts("localhost", srv.port, p.trust())
			opts.SSLShutdownTimeout = f64(5)
			tr := e.connect(opts, r)
			// The reader is blocked in a read before reading is paused, so
			// it reads the close_notify and queues the EOF.
			e.waitFor("the reader to block in read", func() bool { return goroutinesRunning(readLoop, "IO wait") > 0 })
			readers := goroutinesRunning(readLoop, "")
			tr.PauseReading()
			close(send)
			e.waitFor("the reader to stop at EOF", func() bool {
				return goroutinesRunning(readLoop, "") < readers
			})
			tr.Close()
			if err := r.waitLost(); err != nil {
				t.Errorf("connection_lost(%v), want nil", err)
			}
			if got := r.Events(); got != "made eof lost" {
				t.Errorf("events %q", got)
			}
		})
	})
}

// TestTLSLateValidation: non-positive TLS timeouts are refused once the
// TCP connection is up (spec 1.11); goconn then closes the socket. With
// sock= the check is made in the call itself, and the caller's socket is
// left alone.
func TestTLSLateValidation(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		cases := []struct {
			hs, sd *float64
			want   string
		}{
			{f64(0), nil, "ssl_handshake_timeout should be a positive number, got 0"},
			{f64(-1), nil, "ssl_handshake_timeout should be a positive number, got -1"},
			{f64(-0.5), nil, "ssl_handshake_timeout should be a positive number, got -0.5"},
			{nil, f64(0), "ssl_shutdown_timeout should be a positive number, got 0"},
			{nil, f64(-1), "ssl_shutdown_timeout should be a positive number, got -1"},
			{f64(0), f64(0), "ssl_handshake_timeout should be a positive number, got 0"},
		}
		for i, c := range cases {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				e := e.sub(t)
				ln, port := listen(t)
				opts := tlsOpts("localhost", port, p.trust())
				opts.SSLHandshakeTimeout, opts.SSLShutdownTimeout = c.hs, c.sd
				if err := opts.Validate(); err != nil {
					t.Fatalf("Validate refused it early: %v", err)
				}
				res := e.fail(opts)
				if ve, ok := asErr[*core.ValueError](res.Err); !ok || ve.Error() != c.want {
					t.Errorf("got %T %v, want ValueError %q", res.Err, res.Err, c.want)
				}
				if b := readAll(t, accept(t, ln)); len(b) != 0 {
					t.Errorf("the server got %d bytes", len(b))
				}

				// sock=: the error comes from OpenConnection itself.
				ln2, port2 := listen(t)
				fd := connectedFD(t, port2)
				peer := accept(t, ln2)
				sopts := core.Options{Sock: &fd, TLS: p.trust(), ServerHostname: str("localhost"),
					SSLHandshakeTimeout: c.hs, SSLShutdownTimeout: c.sd}
				cb := core.Callbacks{
					Factory: func(*core.Transport) (core.Protocol, error) { t.Error("factory called"); return nil, nil },
					Done:    func(core.Result) { t.Error("done called") },
				}
				x := e.executor()
				_, err := core.OpenConnection(sopts, x, cb)
				if err != nil {
					x.Done() // a refused call hands the executor back
				}
				if ve, ok := asErr[*core.ValueError](err); !ok || ve.Error() != c.want {
					t.Errorf("sock=: got %T %v, want ValueError %q", err, err, c.want)
				}
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					t.Errorf("the caller's socket was closed: %v", err)
				}
				_ = peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if n, err := peer.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("the peer read %d, %v: the socket was used", n, err)
				}
			})
		}
	})
}

// connectedFD is a blocking TCP socket connected to 127.0.0.1:port, closed
// at the end of the test unless the library took it.
func connectedFD(t *testing.T, port int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var now unix.Stat_t
		if unix.Fstat(fd, &now) == nil && now.Ino == st.Ino && now.Dev == st.Dev {
			unix.Close(fd)
		}
	})
	return fd
}

// fdClosed reports whether fd no longer names the socket it named.
func fdClosed(fd int, st unix.Stat_t) bool {
	var now unix.Stat_t
	err := unix.Fstat(fd, &now)
	return err != nil || now.Ino != st.Ino || now.Dev != st.Dev
}

// TestTLSAdoptedSocket: ssl with sock=: the handshake runs on the caller's
// socket, which the transport then owns; a failed handshake closes it.
func TestTLSAdoptedSocket(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		srv := startTLSServer(t, serverConfig(p.server), echoHandler)
		fd := connectedFD(t, srv.port)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		r := newRecorder(e)
		tr := e.connect(core.Options{Sock: &fd, TLS: p.trust(), ServerHostname: str("localhost")}, r)
		if tr.FD() != fd {
			t.Errorf("FD %d, want %d", tr.FD(), fd)
		}
		if sni := srv.sni(t); sni != "localhost" {
			t.Errorf("SNI %q", sni)
		}
		checkInfo(t, tr.TLSInfo(), p.server)
		if err := tr.Write([]byte("adopted")); err != nil {
			t.Fatal(err)
		}
		if got := string(r.waitData(7)); got != "adopted" {
			t.Errorf("echo %q", got)
		}
		tr.Close()
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
		e.waitFor("the adopted socket to be closed", func() bool { return fdClosed(fd, st) })

		bad := startTLSServer(t, serverConfig(p.self), nil)
		fd2 := connectedFD(t, bad.port)
		var st2 unix.Stat_t
		if err := unix.Fstat(fd2, &st2); err != nil {
			t.Fatal(err)
		}
		res := e.fail(core.Options{Sock: &fd2, TLS: p.trust(), ServerHostname: str("localhost")})
		if cve, ok := asErr[*core.CertVerifyError](res.Err); !ok || cve.Code != 18 {
			t.Fatalf("got %v", res.Err)
		}
		if !fdClosed(fd2, st2) {
			t.Error("the adopted socket is still open after the failed handshake")
		}
	})
}

// TestTLSCancelDuringHandshake: Cancel while the server stalls the
// handshake: ErrCancelled, the socket closed, no callback (spec 10.5).
func TestTLSCancelDuringHandshake(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		ln, port := listen(t)
		pend := e.start(tlsOpts("localhost", port, p.trust()), nil)
		c := accept(t, ln)
		readClientHello(t, c)
		if !pend.req.Cancel() {
			t.Fatal("Cancel returned false during the handshake")
		}
		res := pend.wait()
		if res.Err != core.ErrCancelled {
			t.Fatalf("got %v, want ErrCancelled", res.Err)
		}
		if len(res.Attempts) != 1 || res.Attempts[0].Outcome != core.AttemptCancelled {
			t.Errorf("attempts %+v", res.Attempts)
		}
		if b := readAll(t, c); len(b) != 0 {
			t.Errorf("the server got %d more bytes", len(b))
		}
		if pend.req.Cancel() {
			t.Error("a second Cancel returned true")
		}
	})
}

// TestTLSOptionErrors: bad TLS settings fail the request, once the TCP
// connection is up, with the error Python's ssl module gives for them.
func TestTLSOptionErrors(t *testing.T) {
	e := newEnv(t, false)
	dir := t.TempDir()
	junk := writeFile(t, dir, "junk.pem", []byte("no certificates here\n"))
	cases := []struct {
		name  string
		opts  core.TLSOptions
		check func(error) bool
	}{
		{"missing CAFile", core.TLSOptions{CAFile: filepath.Join(dir, "missing.pem")}, func(err error) bool {
			return errors.Is(err, syscall.ENOENT) && err.Error() == "[Errno 2] No such file or directory"
		}},
		{"CAFile without certificates", core.TLSOptions{CAFile: junk}, func(err error) bool {
			te, ok := asErr[*core.TLSError](err)
			return ok && te.Reason == "NO_CERTIFICATE_OR_CRL_FOUND"
		}},
		{"CAData without certificates", core.TLSOptions{CAData: []byte("junk")}, func(err error) bool {
			te, ok := asErr[*core.TLSError](err)
			return ok && te.Reason == "NO_CERTIFICATE_OR_CRL_FOUND"
		}},
		{"unknown ciphers", core.TLSOptions{VerifyNone: true, Ciphers: "NOT-A-CIPHER"}, func(err error) bool {
			te, ok := asErr[*core.TLSError](err)
			return ok && te.Reason == "NO_CIPHER_MATCH"
		}},
		{"max below min", core.TLSOptions{VerifyNone: true, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}, func(err error) bool {
			te, ok := asErr[*core.TLSError](err)
			return ok && te.Reason == "NO_PROTOCOLS_AVAILABLE"
		}},
		{"missing CertFile", core.TLSOptions{VerifyNone: true, CertFile: filepath.Join(dir, "missing.pem")}, func(err error) bool {
			return errors.Is(err, syscall.ENOENT)
		}},
		{"CertData without a key", core.TLSOptions{VerifyNone: true, CertData: newPKI(t).client.certPEM}, func(err error) bool {
			te, ok := asErr[*core.TLSError](err)
			return ok && te.Reason == "PEM_LIB"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			ln, port := listen(t)
			o := c.opts
			res := e.fail(tlsOpts("localhost", port, &o))
			if !c.check(res.Err) {
				t.Errorf("got %T %v", res.Err, res.Err)
			}
			if b := readAll(t, accept(t, ln)); len(b) != 0 {
				t.Errorf("the server got %d bytes", len(b))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// a large transfer

// hashProto hashes what it receives and follows write flow control.
type hashProto struct {
	e      *env
	mu     sync.Mutex
	sum    io.Writer
	n      int64
	paused bool
	pauses int
	eof    bool
	lost   bool
	err    error
}

func (p *hashProto) ConnectionMade(*core.Transport) {}
func (p *hashProto) DataReceived(b []byte) {
	p.mu.Lock()
	p.sum.Write(b)
	p.n += int64(len(b))
	p.mu.Unlock()
	p.e.poke()
}
func (p *hashProto) EOFReceived() bool {
	p.mu.Lock()
	p.eof = true
	p.mu.Unlock()
	return false
}
func (p *hashProto) ConnectionLost(err error) {
	p.mu.Lock()
	p.lost, p.err = true, err
	p.mu.Unlock()
	p.e.poke()
}
func (p *hashProto) PauseWriting() {
	p.mu.Lock()
	p.paused = true
	p.pauses++
	p.mu.Unlock()
	p.e.poke()
}
func (p *hashProto) ResumeWriting() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	p.e.poke()
}
func (p *hashProto) state() (n int64, paused, lost bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, p.paused, p.lost
}

// TestTLSLargeTransfer: 64 MiB out and the same 64 MiB echoed back, with
// write flow control honoured and SHA-256 checksums compared.
func TestTLSLargeTransfer(t *testing.T) {
	const total = 64 << 20
	const chunkSize = 256 << 10
	modes(t, func(t *testing.T, e *env) {
		p := newPKI(t)
		serverSum := make(chan [32]byte, 1)
		srv := startTLSServer(t, serverConfig(p.server), func(c *tls.Conn) {
			h := sha256.New()
			buf := make([]byte, 64*1024)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					h.Write(buf[:n])
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					break
				}
			}
			var s [32]byte
			copy(s[:], h.Sum(nil))
			serverSum <- s
		})
		recvHash := sha256.New()
		proto := &hashProto{e: e, sum: recvHash}
		done := make(chan core.Result, 1)
		cb := core.Callbacks{
			Factory: func(*core.Transport) (core.Protocol, error) { return proto, nil },
			Done:    func(r core.Result) { done <- r; e.poke() },
		}
		if _, err := core.OpenConnection(tlsOpts("localhost", srv.port, p.trust()), e.executor(), cb); err != nil {
			t.Fatal(err)
		}
		var res core.Result
		e.waitFor("on_done", func() bool {
			select {
			case res = <-done:
				return true
			default:
				return false
			}
		})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		tr := res.Transport
		_, high := tr.WriteBufferLimits()

		base := make([]byte, 4*chunkSize)
		rng := rand.NewChaCha8([32]byte{1, 2, 3})
		_, _ = rng.Read(base)
		sentHash := sha256.New()
		chunk := make([]byte, chunkSize)
		for i, sent := 0, 0; sent < total; i++ {
			if _, paused, lost := proto.state(); lost {
				t.Fatalf("connection lost after %d bytes: %v", sent, proto.err)
			} else if paused || int64(tr.WriteBufferSize()) >= high {
				// Paused (or about to be, in direct mode): wait for resume.
				e.waitFor("resume_writing", func() bool {
					_, paused, lost := proto.state()
					return lost || (!paused && int64(tr.WriteBufferSize()) < high)
				})
				continue
			}
			copy(chunk, base[(i%4)*chunkSize:])
			chunk[0], chunk[1], chunk[2], chunk[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
			sentHash.Write(chunk)
			if err := tr.Write(chunk); err != nil {
				t.Fatal(err)
			}
			sent += len(chunk)
		}
		e.waitFor("the echo", func() bool { n, _, lost := proto.state(); return n >= total || lost })
		if n, _, _ := proto.state(); n != total {
			t.Fatalf("received %d bytes, want %d", n, total)
		}
		if !bytes.Equal(recvHash.Sum(nil), sentHash.Sum(nil)) {
			t.Fatal("the echoed stream's SHA-256 differs from what was sent")
		}
		tr.Close()
		e.waitFor("connection_lost", func() bool { _, _, lost := proto.state(); return lost })
		if proto.err != nil || !proto.eof {
			t.Errorf("lost(%v), eof %v", proto.err, proto.eof)
		}
		select {
		case s := <-serverSum:
			if !bytes.Equal(s[:], sentHash.Sum(nil)) {
				t.Error("the server's SHA-256 differs")
			}
		case <-time.After(waitTimeout):
			t.Error("the server never finished")
		}
		if proto.pauses == 0 {
			t.Error("64 MiB went out without a single pause_writing")
		}
	})
}

// ---------------------------------------------------------------------------
// openssl s_server

// TestTLSOpenSSLServer: against OpenSSL's own server: a verified TLS 1.3
// connection through s_server's line-reversing echo, and the shutdown
// exchange; the same callback sequence Python gets.
func TestTLSOpenSSLServer(t *testing.T) {
	e := newEnv(t, false)
	p := newPKI(t)
	port := opensslServer(t, t.TempDir(), p.server, "-rev")
	r := newRecorder(e)
	tr := e.connect(tlsOpts("localhost", port, p.trust()), r)
	checkInfo(t, tr.TLSInfo(), p.server)
	if err := tr.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if got := string(r.waitData(6)); got != "olleh\n" {
		t.Errorf("got %q", got)
	}
	tr.Close()
	if err := r.waitLost(); err != nil {
		t.Error(err)
	}
	if got := r.Events(); got != "made data eof lost" {
		t.Errorf("events %q", got)
	}
}

// TestTLSOpenSSLClientCertRequired: s_server -Verify 1 with no client
// certificate: with TLS 1.3 the alert arrives after connection_made; with
// TLS 1.2 the handshake fails with OpenSSL's handshake_failure alert.
// (Python 3.11 with OpenSSL 3.0 gives the same two results.)
func TestTLSOpenSSLClientCertRequired(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", p.ca.certPEM)
	t.Run("TLS 1.3", func(t *testing.T) {
		e := newEnv(t, false)
		port := opensslServer(t, t.TempDir(), p.server, "-Verify", "1", "-CAfile", caFile)
		r := newRecorder(e)
		e.connect(tlsOpts("localhost", port, p.trust()), r)
		err := r.waitLost()
		if te, ok := asErr[*core.TLSError](err); !ok || te.Reason != "TLSV13_ALERT_CERTIFICATE_REQUIRED" {
			t.Fatalf("connection_lost(%T %v)", err, err)
		}
		if got := r.Events(); got != "made lost" {
			t.Errorf("events %q", got)
		}
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		e := newEnv(t, false)
		port := opensslServer(t, t.TempDir(), p.server, "-Verify", "1", "-CAfile", caFile, "-tls1_2")
		res := e.fail(tlsOpts("localhost", port, p.trust()))
		want := "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure"
		if res.Err.Error() != want {
			t.Fatalf("got %v, want %s", res.Err, want)
		}
	})
	t.Run("with a certificate", func(t *testing.T) {
		e := newEnv(t, false)
		port := opensslServer(t, t.TempDir(), p.server, "-Verify", "1", "-CAfile", caFile, "-rev")
		r := newRecorder(e)
		tr := e.connect(tlsOpts("localhost", port, &core.TLSOptions{CAData: p.ca.certPEM,
			CertData: p.client.certPEM, KeyData: p.client.keyPEM}), r)
		if err := tr.Write([]byte("abc\n")); err != nil {
			t.Fatal(err)
		}
		if got := string(r.waitData(4)); got != "cba\n" {
			t.Errorf("got %q", got)
		}
		tr.Close()
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
	})
}
