package core

// Unit tests of the TLS error mapping: Python's float repr in messages,
// OpenSSL's verify codes and texts, handshake errors and alert names, and
// OpenSSL's names for cipher suites (checked against the openssl binary).

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPyFloat(t *testing.T) {
	tenth, fifth := 0.1, 0.2 // summed at run time, not as exact constants
	// Each value with what repr() gives in CPython 3.11.
	cases := []struct {
		v    float64
		want string
	}{
		{60, "60.0"},
		{0.2, "0.2"},
		{1e-05, "1e-05"},
		{1e16, "1e+16"},
		{1.5, "1.5"},
		{0.3, "0.3"},
		{30, "30.0"},
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{-0.5, "-0.5"},
		{0.0001, "0.0001"},
		{1.25e-07, "1.25e-07"},
		{1e6, "1000000.0"},
		{1234567.5, "1234567.5"},
		{1e15, "1000000000000000.0"},
		{9999999999999998, "9999999999999998.0"},
		{1.5e16, "1.5e+16"},
		{123456789012345680, "1.2345678901234568e+17"},
		{1e100, "1e+100"},
		{5e-324, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{tenth + fifth, "0.30000000000000004"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
		{math.NaN(), "nan"},
	}
	for _, c := range cases {
		if got := PyFloat(c.v); got != c.want {
			t.Errorf("PyFloat(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestPyNumber(t *testing.T) {
	for v, want := range map[float64]string{0: "0", -1: "-1", -30: "-30", -0.5: "-0.5", -1e-05: "-1e-05", math.Inf(-1): "-inf"} {
		if got := pyNumber(v); got != want {
			t.Errorf("pyNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestHandshakeTimeoutText(t *testing.T) {
	for v, want := range map[float64]string{
		60:  "SSL handshake is taking longer than 60.0 seconds: aborting the connection",
		0.2: "SSL handshake is taking longer than 0.2 seconds: aborting the connection",
		1e6: "SSL handshake is taking longer than 1000000.0 seconds: aborting the connection",
	} {
		if got := (&HandshakeTimeoutError{Timeout: v}).Error(); got != want {
			t.Errorf("%v: %q, want %q", v, got, want)
		}
	}
	if got := ErrShutdownTimeout.Error(); got != "SSL shutdown timed out" {
		t.Errorf("shutdown timeout text %q", got)
	}
}

// testCert makes a certificate from tmpl, signed by parent (self-signed
// when parent is nil).
func testCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// TestVerifyErrorMapping: Go's verification errors become OpenSSL 3's
// X509_V_ERR_* codes and X509_verify_cert_error_string texts (read from
// libcrypto 3.0), and CPython's own texts for 62 and 64.
func TestVerifyErrorMapping(t *testing.T) {
	ca, caKey := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	leaf, _ := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}, DNSNames: []string{"localhost"}}, ca, caKey)
	// A self-signed leaf without CA:TRUE is still "self-signed" to OpenSSL.
	self, _ := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "self"}, DNSNames: []string{"localhost"}}, nil, nil)
	now := time.Now()
	goErr := errors.New("go")

	cases := []struct {
		name     string
		err      error
		chain    []*x509.Certificate
		host     string
		code     int
		msg      string
		hostname bool
	}{
		{"host name", x509.HostnameError{Certificate: leaf, Host: "wronghost"}, []*x509.Certificate{leaf}, "wronghost",
			62, "Hostname mismatch, certificate is not valid for 'wronghost'.", true},
		{"IPv4", x509.HostnameError{Certificate: leaf, Host: "127.0.0.1"}, []*x509.Certificate{leaf}, "127.0.0.1",
			64, "IP address mismatch, certificate is not valid for '127.0.0.1'.", true},
		{"IPv6", x509.HostnameError{Certificate: leaf, Host: "::1"}, []*x509.Certificate{leaf}, "::1",
			64, "IP address mismatch, certificate is not valid for '::1'.", true},
		{"wrapped host name", fmt.Errorf("x: %w", x509.HostnameError{Certificate: leaf, Host: "h"}), nil, "h",
			62, "Hostname mismatch, certificate is not valid for 'h'.", true},
		{"self-signed leaf", x509.UnknownAuthorityError{Cert: self}, []*x509.Certificate{self}, "",
			18, "self-signed certificate", false},
		{"self-signed root in chain", x509.UnknownAuthorityError{Cert: ca}, []*x509.Certificate{leaf, ca}, "",
			19, "self-signed certificate in certificate chain", false},
		{"unknown issuer", x509.UnknownAuthorityError{Cert: leaf}, []*x509.Certificate{leaf}, "",
			20, "unable to get local issuer certificate", false},
		{"expired", x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}, []*x509.Certificate{leaf}, "",
			10, "certificate has expired", false},
		{"not yet valid", x509.CertificateInvalidError{Cert: &x509.Certificate{NotBefore: now.Add(time.Hour)}, Reason: x509.Expired}, nil, "",
			9, "certificate is not yet valid", false},
		{"not a CA", x509.CertificateInvalidError{Cert: leaf, Reason: x509.NotAuthorizedToSign}, nil, "",
			79, "invalid CA certificate", false},
		{"chain too long", x509.CertificateInvalidError{Cert: leaf, Reason: x509.TooManyIntermediates}, nil, "",
			22, "certificate chain too long", false},
		{"purpose", x509.CertificateInvalidError{Cert: leaf, Reason: x509.IncompatibleUsage}, nil, "",
			26, "unsuitable certificate purpose", false},
		{"name constraints", x509.CertificateInvalidError{Cert: leaf, Reason: x509.CANotAuthorizedForThisName}, nil, "",
			47, "permitted subtree violation", false},
		{"no system roots", x509.SystemRootsError{Err: goErr}, nil, "",
			20, "unable to get local issuer certificate", false},
		{"anything else", goErr, nil, "",
			1, "unspecified certificate verification error", false},
	}
	for _, c := range cases {
		got := verifyError(c.err, c.chain, c.host, now)
		if got.Code != c.code || got.Message != c.msg || got.Hostname != c.hostname {
			t.Errorf("%s: got %d %q %v, want %d %q %v", c.name, got.Code, got.Message, got.Hostname, c.code, c.msg, c.hostname)
		}
		if want := "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: " + c.msg + ""; got.Error() != want {
			t.Errorf("%s: Error() %q", c.name, got.Error())
		}
		if !errors.Is(got, c.err) && got.Unwrap() != c.err {
			t.Errorf("%s: the Go error is not kept", c.name)
		}
	}
}

// alertOf makes the error crypto/tls returns for an alert from the peer.
func alertOf(code uint8) error {
	return &net.OpError{Op: "remote error", Err: tls.AlertError(code)}
}

func TestHandshakeErrorMapping(t *testing.T) {
	cve := &CertVerifyError{Code: 18, Message: "self-signed certificate"}
	cases := []struct {
		name     string
		err      error
		timedOut bool
		check    func(error) bool
		text     string
	}{
		{"verify error wins", fmt.Errorf("tls: %w", cve), true, func(e error) bool { return e == cve },
			"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"},
		{"timeout", context.DeadlineExceeded, true, func(e error) bool {
			h, ok := e.(*HandshakeTimeoutError)
			return ok && h.Timeout == 0.5
		}, "SSL handshake is taking longer than 0.5 seconds: aborting the connection"},
		{"EOF", io.EOF, false, isReset, ""},
		{"unexpected EOF", io.ErrUnexpectedEOF, false, isReset, ""},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, false, isReset, ""},
		{"EPIPE", syscall.EPIPE, false, isReset, ""},
		{"closed", os.ErrClosed, false, isReset, ""},
		{"alert 116", alertOf(116), false, reason("TLSV13_ALERT_CERTIFICATE_REQUIRED"),
			"[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"},
		{"alert 40", alertOf(40), false, reason("SSLV3_ALERT_HANDSHAKE_FAILURE"),
			"[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure"},
		{"alert 48", alertOf(48), false, reason("TLSV1_ALERT_UNKNOWN_CA"),
			"[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca"},
		{"alert 70", alertOf(70), false, reason("TLSV1_ALERT_PROTOCOL_VERSION"),
			"[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version"},
		{"alert 112", alertOf(112), false, reason("TLSV1_UNRECOGNIZED_NAME"),
			"[SSL: TLSV1_UNRECOGNIZED_NAME] tlsv1 unrecognized name"},
		{"alert 120", alertOf(120), false, reason("TLSV1_ALERT_NO_APPLICATION_PROTOCOL"),
			"[SSL: TLSV1_ALERT_NO_APPLICATION_PROTOCOL] tlsv1 alert no application protocol"},
		{"unknown alert", alertOf(200), false, reason("TLS_ALERT_200"), "[SSL: TLS_ALERT_200] tls alert 200"},
		{"errno", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}, false, func(e error) bool {
			o, ok := e.(*OSError)
			return ok && o.Errno == syscall.ETIMEDOUT
		}, "[Errno 110] Connection timed out"},
		{"not TLS", errors.New("tls: first record does not look like a TLS handshake"), false, reason("WRONG_VERSION_NUMBER"),
			"[SSL: WRONG_VERSION_NUMBER] wrong version number"},
		{"unsupported version", errors.New("tls: server selected unsupported protocol version 301"), false, reason("UNSUPPORTED_PROTOCOL"),
			"[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol"},
		{"bad ALPN", errors.New("tls: server selected unadvertised ALPN protocol"), false, reason("BAD_EXTENSION"),
			"[SSL: BAD_EXTENSION] bad extension"},
		{"other", errors.New("tls: something odd"), false, reason("SSL_HANDSHAKE_FAILURE"),
			"[SSL: SSL_HANDSHAKE_FAILURE] something odd"},
	}
	for _, c := range cases {
		got := handshakeError(c.err, c.timedOut, 0.5)
		if !c.check(got) {
			t.Errorf("%s: got %T %#v", c.name, got, got)
			continue
		}
		if got.Error() != c.text {
			t.Errorf("%s: Error() %q, want %q", c.name, got.Error(), c.text)
		}
		if te, ok := got.(*TLSError); ok && te.Unwrap() != c.err {
			t.Errorf("%s: the Go error is not kept", c.name)
		}
	}
}

func isReset(e error) bool {
	ce, ok := e.(*ConnError)
	return ok && ce.Errno == syscall.ECONNRESET && ce.Text == ""
}

func reason(r string) func(error) bool {
	return func(e error) bool {
		te, ok := e.(*TLSError)
		return ok && te.Reason == r
	}
}

// TestHandshakeErrorRealAlerts: errors from real crypto/tls handshakes
// over a pipe, where the server refuses the client with an alert.
func TestHandshakeErrorRealAlerts(t *testing.T) {
	ca, caKey := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	leaf, leafKey := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}}, ca, caKey)
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: leafKey}
	cases := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		reason string
	}{
		{"protocol version", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
			&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}, "TLSV1_ALERT_PROTOCOL_VERSION"},
		{"no application protocol", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"a"}},
			&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"b"}}, "TLSV1_ALERT_NO_APPLICATION_PROTOCOL"},
		{"client certificate required (1.2)", &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12,
			ClientAuth: tls.RequireAnyClientCert}, &tls.Config{InsecureSkipVerify: true}, "SSLV3_ALERT_HANDSHAKE_FAILURE"},
	}
	for _, c := range cases {
		cc, sc := net.Pipe()
		go func() {
			_ = tls.Server(sc, c.server).Handshake()
			sc.Close()
		}()
		err := tls.Client(cc, c.client).Handshake()
		cc.Close()
		got := handshakeError(err, false, 1)
		if te, ok := got.(*TLSError); !ok || te.Reason != c.reason {
			t.Errorf("%s: %v gave %T %v, want %s", c.name, err, got, got, c.reason)
		}
	}
}

// TestAlertTableMatchesOpenSSL: every alert OpenSSL has a reason for is in
// the table, with OpenSSL's text, and its name is that text in capitals
// (as OpenSSL names its SSL_R_*ALERT* reasons).
func TestAlertTableMatchesOpenSSL(t *testing.T) {
	for code, a := range opensslAlerts {
		if want := strings.ToUpper(strings.ReplaceAll(a[1], " ", "_")); a[0] != want {
			t.Errorf("alert %d: name %q, want %q", code, a[0], want)
		}
	}
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	// OpenSSL 3 packs ERR_LIB_SSL (20) << 23 with reason 1000 + alert.
	args := []string{"errstr"}
	for a := 0; a < 256; a++ {
		args = append(args, fmt.Sprintf("%08X", 20<<23|(1000+a)))
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("openssl errstr: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	checked := 0
	for a := 0; sc.Scan(); a++ {
		_, text, ok := strings.Cut(sc.Text(), "SSL routines::")
		if !ok || strings.HasPrefix(text, "reason(") {
			continue
		}
		checked++
		got, ok := opensslAlerts[uint8(a)]
		if !ok {
			t.Errorf("alert %d (%q) is missing from the table", a, text)
			continue
		}
		if got[1] != text {
			t.Errorf("alert %d: text %q, OpenSSL says %q", a, got[1], text)
		}
	}
	if checked < 20 {
		t.Fatalf("openssl errstr named only %d alerts:\n%s", checked, out)
	}
}

// TestCipherInfoMatchesOpenSSL: for every suite the table names, the name
// exists in OpenSSL, and cipherInfo's protocol and bits are what
// SSLObject.cipher() gives (OpenSSL's SSL_CIPHER_get_version and bits).
func TestCipherInfoMatchesOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	out, err := exec.Command(bin, "ciphers", "-v", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").Output()
	if err != nil {
		t.Fatalf("openssl ciphers: %v", err)
	}
	type info struct {
		version string
		bits    int
	}
	known := map[string]info{}
	bitsRe := regexp.MustCompile(`Enc=[^ ]*\((\d+)\)`)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		m := bitsRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		b, _ := strconv.Atoi(m[1])
		// SSL_CIPHER_description says "TLSv1" where SSL_CIPHER_get_version
		// (what Python's cipher() and get_ciphers() give) says "TLSv1.0".
		v := f[1]
		if v == "TLSv1" {
			v = "TLSv1.0"
		}
		known[f[0]] = info{v, b}
	}
	ids := map[string]uint16{}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		ids[s.Name] = s.ID
	}
	for goName, name := range opensslCipherNames {
		want, ok := known[name]
		if !ok {
			t.Errorf("%s: OpenSSL has no suite %q", goName, name)
			continue
		}
		id, ok := ids[goName]
		if !ok {
			t.Errorf("crypto/tls has no suite %q", goName)
			continue
		}
		gotName, version, bits := cipherInfo(id)
		if gotName != name || version != want.version || bits != want.bits {
			t.Errorf("cipherInfo(%s) = (%q, %q, %d), OpenSSL says (%q, %q, %d)", goName, gotName, version, bits, name, want.version, want.bits)
		}
	}
}

func TestTLSVersionName(t *testing.T) {
	for v, want := range map[uint16]string{tls.VersionTLS13: "TLSv1.3", tls.VersionTLS12: "TLSv1.2",
		tls.VersionTLS11: "TLSv1.1", tls.VersionTLS10: "TLSv1", 0x0300: ""} {
		if got := tlsVersionName(v); got != want {
			t.Errorf("%#x: %q, want %q", v, got, want)
		}
	}
}

func TestCipherSuitesOption(t *testing.T) {
	ids, err := cipherSuites("ECDHE-ECDSA-AES128-GCM-SHA256:NOPE, ECDHE-RSA-AES256-GCM-SHA384 ECDHE-ECDSA-AES128-GCM-SHA256")
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", ids, want)
	}
	if _, err := cipherSuites("NOPE:ALSO-NOPE"); err == nil || err.(*TLSError).Reason != "NO_CIPHER_MATCH" {
		t.Errorf("got %v", err)
	}
}

func TestAddCerts(t *testing.T) {
	a, _ := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "a"}, IsCA: true, BasicConstraintsValid: true}, nil, nil)
	b, _ := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "b"}, IsCA: true, BasicConstraintsValid: true}, nil, nil)
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	cases := []struct {
		name string
		data []byte
		want int
	}{
		{"one PEM", pemOf("CERTIFICATE", a.Raw), 1},
		{"PEM bundle with other blocks", append(append(pemOf("CERTIFICATE", a.Raw), pemOf("PRIVATE KEY", []byte{1})...), pemOf("CERTIFICATE", b.Raw)...), 2},
		{"one DER", a.Raw, 1},
		{"two DER", append(append([]byte(nil), a.Raw...), b.Raw...), 2},
		{"garbage", []byte("garbage"), 0},
		{"PEM without certificates", pemOf("PRIVATE KEY", []byte{1}), 0},
	}
	for _, c := range cases {
		if n := addCerts(x509.NewCertPool(), c.data); n != c.want {
			t.Errorf("%s: added %d, want %d", c.name, n, c.want)
		}
	}
}
