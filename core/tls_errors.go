package core

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// TLS failures carry what Python's ssl module would put on its exceptions:
// OpenSSL's verify code and text, or OpenSSL's reason name and text, so the
// Python layer can raise ssl.SSLCertVerificationError / ssl.SSLError with
// the same attributes, and C callers can tell the cases apart.

// The texts are OpenSSL's as Python shows them, without the
// "(_ssl.c:NNNN)" location CPython appends: that names a line of the
// running interpreter's _ssl.c, so the Python layer adds its own.

// CertVerifyError is a failed certificate verification
// (ssl.SSLCertVerificationError, reason CERTIFICATE_VERIFY_FAILED).
type CertVerifyError struct {
	Code     int    // OpenSSL's X509_V_ERR_* value, e.g. 18 for a self-signed certificate
	Message  string // its text, e.g. "self-signed certificate"
	Hostname bool   // the certificate is fine but not for this host (codes 62 and 64)
	Err      error  // Go's own error
}

func (e *CertVerifyError) Error() string {
	return "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: " + e.Message
}

func (e *CertVerifyError) Unwrap() error { return e.Err }

// TLSError is any other TLS failure (ssl.SSLError): Reason is OpenSSL's
// reason name ("TLSV1_ALERT_PROTOCOL_VERSION"), Text its description.
type TLSError struct {
	Reason string
	Text   string
	Err    error
}

func (e *TLSError) Error() string {
	return "[SSL: " + e.Reason + "] " + e.Text
}

func (e *TLSError) Unwrap() error { return e.Err }

// HandshakeTimeoutError is asyncio's ConnectionAbortedError for a handshake
// that outlived ssl_handshake_timeout.
type HandshakeTimeoutError struct{ Timeout float64 }

func (e *HandshakeTimeoutError) Error() string {
	return fmt.Sprintf("SSL handshake is taking longer than %s seconds: aborting the connection", PyFloat(e.Timeout))
}

// ConnError is an OSError subclass that Python raises without an errno:
// ConnectionResetError() when the peer closes during the handshake.
type ConnError struct {
	Errno syscall.Errno // picks the class: ECONNRESET gives ConnectionResetError
	Text  string
}

func (e *ConnError) Error() string { return e.Text }

// ErrShutdownTimeout is asyncio's TimeoutError('SSL shutdown timed out').
var ErrShutdownTimeout = &TimeoutError{Text: "SSL shutdown timed out"}

// ErrNotSupported is asyncio's NotImplementedError (write_eof on TLS).
var ErrNotSupported = errors.New("not supported by a TLS transport")

// PyFloat formats a float as Python's repr does: 60.0, 0.2, 1e-05,
// 1000000.0, 1e+16, inf. repr uses the shortest digits that round-trip, in
// scientific notation only when the decimal exponent is below -4 or at
// least 16, with a two-digit exponent at least.
func PyFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	case math.IsNaN(v):
		return "nan"
	}
	mant, exp, _ := strings.Cut(strconv.FormatFloat(v, 'e', -1, 64), "e")
	x, _ := strconv.Atoi(exp)
	if x < -4 || x >= 16 {
		sign := "+"
		if x < 0 {
			sign, x = "-", -x
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, x)
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// handshakeError turns what crypto/tls returned into the error asyncio raises.
func handshakeError(err error, timedOut bool, timeout float64) error {
	var cve *CertVerifyError
	if errors.As(err, &cve) {
		return cve
	}
	if timedOut {
		return &HandshakeTimeoutError{Timeout: timeout}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
		// The peer went away mid-handshake: asyncio's bare ConnectionResetError.
		return &ConnError{Errno: syscall.ECONNRESET}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		if v := reflect.ValueOf(oe.Err); v.Kind() == reflect.Uint8 {
			return alertError(uint8(v.Uint()), err)
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &OSError{Errno: errno, Text: strerror(errno)}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"),
		strings.Contains(msg, "oversized record"):
		return &TLSError{Reason: "WRONG_VERSION_NUMBER", Text: "wrong version number", Err: err}
	case strings.Contains(msg, "unsupported protocol version"), strings.Contains(msg, "protocol version not supported"):
		return &TLSError{Reason: "UNSUPPORTED_PROTOCOL", Text: "unsupported protocol", Err: err}
	case strings.Contains(msg, "server selected unadvertised ALPN protocol"):
		return &TLSError{Reason: "BAD_EXTENSION", Text: "bad extension", Err: err}
	}
	return &TLSError{Reason: "SSL_HANDSHAKE_FAILURE", Text: strings.TrimPrefix(msg, "tls: "), Err: err}
}

// alertError names a TLS alert the peer sent, as OpenSSL does.
func alertError(code uint8, err error) error {
	if a, ok := opensslAlerts[code]; ok {
		return &TLSError{Reason: a[0], Text: a[1], Err: err}
	}
	return &TLSError{Reason: fmt.Sprintf("TLS_ALERT_%d", code), Text: fmt.Sprintf("tls alert %d", code), Err: err}
}

// opensslAlerts maps alert numbers to OpenSSL's reason names and texts.
var opensslAlerts = map[uint8][2]string{
	10:  {"SSLV3_ALERT_UNEXPECTED_MESSAGE", "sslv3 alert unexpected message"},
	20:  {"SSLV3_ALERT_BAD_RECORD_MAC", "sslv3 alert bad record mac"},
	21:  {"TLSV1_ALERT_DECRYPTION_FAILED", "tlsv1 alert decryption failed"},
	22:  {"TLSV1_ALERT_RECORD_OVERFLOW", "tlsv1 alert record overflow"},
	30:  {"SSLV3_ALERT_DECOMPRESSION_FAILURE", "sslv3 alert decompression failure"},
	40:  {"SSLV3_ALERT_HANDSHAKE_FAILURE", "sslv3 alert handshake failure"},
	41:  {"SSLV3_ALERT_NO_CERTIFICATE", "sslv3 alert no certificate"},
	42:  {"SSLV3_ALERT_BAD_CERTIFICATE", "sslv3 alert bad certificate"},
	43:  {"SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "sslv3 alert unsupported certificate"},
	44:  {"SSLV3_ALERT_CERTIFICATE_REVOKED", "sslv3 alert certificate revoked"},
	45:  {"SSLV3_ALERT_CERTIFICATE_EXPIRED", "sslv3 alert certificate expired"},
	46:  {"SSLV3_ALERT_CERTIFICATE_UNKNOWN", "sslv3 alert certificate unknown"},
	47:  {"SSLV3_ALERT_ILLEGAL_PARAMETER", "sslv3 alert illegal parameter"},
	48:  {"TLSV1_ALERT_UNKNOWN_CA", "tlsv1 alert unknown ca"},
	49:  {"TLSV1_ALERT_ACCESS_DENIED", "tlsv1 alert access denied"},
	50:  {"TLSV1_ALERT_DECODE_ERROR", "tlsv1 alert decode error"},
	51:  {"TLSV1_ALERT_DECRYPT_ERROR", "tlsv1 alert decrypt error"},
	60:  {"TLSV1_ALERT_EXPORT_RESTRICTION", "tlsv1 alert export restriction"},
	70:  {"TLSV1_ALERT_PROTOCOL_VERSION", "tlsv1 alert protocol version"},
	71:  {"TLSV1_ALERT_INSUFFICIENT_SECURITY", "tlsv1 alert insufficient security"},
	80:  {"TLSV1_ALERT_INTERNAL_ERROR", "tlsv1 alert internal error"},
	86:  {"TLSV1_ALERT_INAPPROPRIATE_FALLBACK", "tlsv1 alert inappropriate fallback"},
	90:  {"TLSV1_ALERT_USER_CANCELLED", "tlsv1 alert user cancelled"},
	100: {"TLSV1_ALERT_NO_RENEGOTIATION", "tlsv1 alert no renegotiation"},
	109: {"TLSV13_ALERT_MISSING_EXTENSION", "tlsv13 alert missing extension"},
	110: {"TLSV1_UNSUPPORTED_EXTENSION", "tlsv1 unsupported extension"},
	111: {"TLSV1_CERTIFICATE_UNOBTAINABLE", "tlsv1 certificate unobtainable"},
	112: {"TLSV1_UNRECOGNIZED_NAME", "tlsv1 unrecognized name"},
	113: {"TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE", "tlsv1 bad certificate status response"},
	114: {"TLSV1_BAD_CERTIFICATE_HASH_VALUE", "tlsv1 bad certificate hash value"},
	115: {"TLSV1_ALERT_UNKNOWN_PSK_IDENTITY", "tlsv1 alert unknown psk identity"},
	116: {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "tlsv13 alert certificate required"},
	120: {"TLSV1_ALERT_NO_APPLICATION_PROTOCOL", "tlsv1 alert no application protocol"},
}

// verifyError maps Go's certificate verification errors to OpenSSL's
// X509_V_ERR_* codes and texts (OpenSSL 3 wording), which Python reports
// as verify_code and verify_message.
func verifyError(err error, chain []*x509.Certificate, host string, now time.Time) *CertVerifyError {
	var he x509.HostnameError
	if errors.As(err, &he) {
		if ipHost(host) {
			return &CertVerifyError{Code: 64, Message: fmt.Sprintf("IP address mismatch, certificate is not valid for '%s'.", host), Hostname: true, Err: err}
		}
		return &CertVerifyError{Code: 62, Message: fmt.Sprintf("Hostname mismatch, certificate is not valid for '%s'.", host), Hostname: true, Err: err}
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		switch {
		case len(chain) == 1 && selfSigned(chain[0]):
			return &CertVerifyError{Code: 18, Message: "self-signed certificate", Err: err}
		case len(chain) > 1 && selfSigned(chain[len(chain)-1]):
			return &CertVerifyError{Code: 19, Message: "self-signed certificate in certificate chain", Err: err}
		}
		return &CertVerifyError{Code: 20, Message: "unable to get local issuer certificate", Err: err}
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) {
		switch ci.Reason {
		case x509.Expired:
			if ci.Cert != nil && now.Before(ci.Cert.NotBefore) {
				return &CertVerifyError{Code: 9, Message: "certificate is not yet valid", Err: err}
			}
			return &CertVerifyError{Code: 10, Message: "certificate has expired", Err: err}
		case x509.NotAuthorizedToSign:
			return &CertVerifyError{Code: 79, Message: "invalid CA certificate", Err: err} // 24 before OpenSSL 3.0
		case x509.TooManyIntermediates:
			return &CertVerifyError{Code: 22, Message: "certificate chain too long", Err: err}
		case x509.IncompatibleUsage, x509.CANotAuthorizedForExtKeyUsage:
			return &CertVerifyError{Code: 26, Message: "unsuitable certificate purpose", Err: err}
		case x509.CANotAuthorizedForThisName:
			return &CertVerifyError{Code: 47, Message: "permitted subtree violation", Err: err}
		}
	}
	var sr x509.SystemRootsError
	if errors.As(err, &sr) {
		return &CertVerifyError{Code: 20, Message: "unable to get local issuer certificate", Err: err}
	}
	return &CertVerifyError{Code: 1, Message: "unspecified certificate verification error", Err: err}
}

// selfSigned: issued by itself and signed with its own key. OpenSSL does
// not ask for CA:TRUE here, so neither does this (CheckSignatureFrom would).
func selfSigned(c *x509.Certificate) bool {
	return c != nil && string(c.RawSubject) == string(c.RawIssuer) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func ipHost(host string) bool {
	return net.ParseIP(strings.Trim(host, "[]")) != nil
}
