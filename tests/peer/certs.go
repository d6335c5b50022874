package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The test certificates, made fresh at run time (nothing is committed):
//
//	ca.pem, ca.key                 the test CA
//	server.pem, server.key         signed by the CA for DNS localhost, IP 127.0.0.1 and ::1
//	other.pem, other.key           signed by the CA for DNS other.example only
//	expired.pem, expired.key       like server.pem, but expired yesterday
//	selfsigned.pem, selfsigned.key like server.pem, but self-signed (CA:TRUE, as `openssl req -x509` makes)
//	selfsigned-leaf.pem, .key      like server.pem, but self-signed with CA:FALSE
//	client.pem, client.key         a client certificate signed by the CA
//	client-enc.key                 client.key as PKCS#8 encrypted with the password "secret"
//
// Certificates hold one PEM certificate each; keys are PKCS#8 PEM.

// ClientKeyPassword is the password of client-enc.key.
const ClientKeyPassword = "secret"

func certsCommand(args []string) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	keyType := fs.String("key-type", "ecdsa", "key `TYPE`: ecdsa (P-256) or rsa (2048 bits)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: goconn-peer certs [--key-type ecdsa|rsa] DIR\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagError{err}
	}
	if fs.NArg() != 1 {
		return errors.New("certs: give exactly one directory")
	}
	if *keyType != "ecdsa" && *keyType != "rsa" {
		return fmt.Errorf("certs: unknown --key-type %q", *keyType)
	}
	return writeCerts(fs.Arg(0), *keyType)
}

// issuer is a certificate with its key, able to sign others.
type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func writeCerts(dir, keyType string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	now := time.Now()
	year := 365 * 24 * time.Hour
	serverNames := func(t *x509.Certificate) {
		t.DNSNames = []string{"localhost"}
		t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}

	ca, err := makeCert(dir, "ca", keyType, nil, func(t *x509.Certificate) {
		t.Subject.CommonName = "goconn test CA"
		t.IsCA = true
		t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		// Valid long before anything it signs, the expired certificate
		// included, as real CAs are.
		t.NotBefore = now.Add(-30 * 24 * time.Hour)
		t.NotAfter = now.Add(10 * year)
	})
	if err != nil {
		return err
	}
	steps := []struct {
		name string
		sign *issuer // nil: self-signed
		fill func(*x509.Certificate)
	}{
		{"server", ca, func(t *x509.Certificate) { t.Subject.CommonName = "localhost"; serverNames(t) }},
		{"other", ca, func(t *x509.Certificate) {
			t.Subject.CommonName = "other.example"
			t.DNSNames = []string{"other.example"}
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}},
		{"expired", ca, func(t *x509.Certificate) {
			t.Subject.CommonName = "localhost"
			serverNames(t)
			t.NotBefore = now.Add(-48 * time.Hour)
			t.NotAfter = now.Add(-24 * time.Hour)
		}},
		{"selfsigned", nil, func(t *x509.Certificate) {
			t.Subject.CommonName = "localhost"
			serverNames(t)
			t.IsCA = true
			t.KeyUsage |= x509.KeyUsageCertSign
		}},
		{"selfsigned-leaf", nil, func(t *x509.Certificate) { t.Subject.CommonName = "localhost"; serverNames(t) }},
		{"client", ca, func(t *x509.Certificate) {
			t.Subject.CommonName = "goconn test client"
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}},
	}
	var client *issuer
	for _, s := range steps {
		is, err := makeCert(dir, s.name, keyType, s.sign, s.fill)
		if err != nil {
			return err
		}
		if s.name == "client" {
			client = is
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(client.key)
	if err != nil {
		return err
	}
	enc, err := encryptPKCS8(der, []byte(ClientKeyPassword))
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "client-enc.key"), "ENCRYPTED PRIVATE KEY", enc, 0o600)
}

// makeCert makes a key and a certificate from the template that fill
// completes, signed by parent (or by itself), and writes NAME.pem and
// NAME.key.
func makeCert(dir, name, keyType string, parent *issuer, fill func(*x509.Certificate)) (*issuer, error) {
	key, err := newKey(keyType)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"goconn tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	fill(tmpl)
	signer := &issuer{cert: tmpl, key: key}
	if parent != nil {
		signer = parent
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, key.Public(), signer.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, name+".key"), "PRIVATE KEY", keyDER, 0o600); err != nil {
		return nil, err
	}
	return &issuer{cert: cert, key: key}, nil
}

func newKey(keyType string) (crypto.Signer, error) {
	if keyType == "rsa" {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// writePEM writes one PEM block, through a temporary file so that a reader
// never sees half a file.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
