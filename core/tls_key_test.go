package core

// Unit tests of encrypted private keys (load_cert_chain(password=...)):
// keys encrypted by the openssl binary in the PKCS#8 and legacy PEM forms,
// decrypted by decryptKeyPEM, and wrong passwords.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	testRSAOnce sync.Once
	testRSAKey  *rsa.PrivateKey
)

// testKeys returns an EC and an RSA key (the RSA one made once per run).
func testKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	testRSAOnce.Do(func() { testRSAKey, _ = rsa.GenerateKey(rand.Reader, 2048) })
	if testRSAKey == nil {
		t.Fatal("no RSA key")
	}
	return map[string]crypto.Signer{"ec": ec, "rsa": testRSAKey}
}

func pkcs8PEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// sameKey reports whether the (decrypted) PEM holds key k.
func sameKey(t *testing.T, data []byte, k crypto.Signer) bool {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Errorf("no PEM block in %q", data)
		return false
	}
	var got any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		got, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		got, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		got, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		t.Errorf("block type %q", block.Type)
		return false
	}
	if err != nil {
		t.Errorf("parse %s: %v", block.Type, err)
		return false
	}
	return got.(interface{ Equal(crypto.PrivateKey) bool }).Equal(k)
}

func runOpenSSL(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestDecryptKeyOpenSSL: keys encrypted by openssl in the forms it writes
// today (PBES2 with PBKDF2 and AES or 3DES, HMAC-SHA1/256/512) and the
// legacy PEM form, for EC and RSA keys.
func TestDecryptKeyOpenSSL(t *testing.T) {
	dir := t.TempDir()
	forms := []struct {
		name   string
		args   []string // after the key file; openssl writes PEM to stdout
		marker string
		algos  []string // key types the command takes
	}{
		{"pkcs8 aes-256-cbc", []string{"pkcs8", "-topk8", "-v2", "aes-256-cbc"}, "ENCRYPTED PRIVATE KEY", []string{"ec", "rsa"}},
		{"pkcs8 aes-128-cbc sha1", []string{"pkcs8", "-topk8", "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"}, "ENCRYPTED PRIVATE KEY", []string{"ec"}},
		{"pkcs8 aes-192-cbc sha512", []string{"pkcs8", "-topk8", "-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512"}, "ENCRYPTED PRIVATE KEY", []string{"ec"}},
		{"pkcs8 des3", []string{"pkcs8", "-topk8", "-v2", "des3"}, "ENCRYPTED PRIVATE KEY", []string{"ec"}},
		{"pkey aes256", []string{"pkey", "-aes256"}, "ENCRYPTED PRIVATE KEY", []string{"ec", "rsa"}},
		{"legacy rsa aes256", []string{"rsa", "-aes256", "-traditional"}, "Proc-Type: 4,ENCRYPTED", []string{"rsa"}},
		{"legacy rsa des3", []string{"rsa", "-des3", "-traditional"}, "Proc-Type: 4,ENCRYPTED", []string{"rsa"}},
		{"legacy ec aes128", []string{"ec", "-aes128"}, "Proc-Type: 4,ENCRYPTED", []string{"ec"}},
	}
	keys := testKeys(t)
	for _, f := range forms {
		for _, algo := range f.algos {
			k := keys[algo]
			in := filepath.Join(dir, algo+".pem")
			if err := os.WriteFile(in, pkcs8PEM(t, k), 0o600); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string(nil), f.args...), "-in", in, "-passout", "pass:s3cret pass")
			enc := runOpenSSL(t, args...)
			if !bytes.Contains(enc, []byte(f.marker)) {
				t.Fatalf("%s %s: openssl wrote no %q:\n%s", f.name, algo, f.marker, enc)
			}
			// openssl may print "writing RSA key" before the PEM.
			enc = enc[bytes.Index(enc, []byte("-----BEGIN")):]
			plain, err := decryptKeyPEM(enc, []byte("s3cret pass"))
			if err != nil {
				t.Errorf("%s %s: %v", f.name, algo, err)
				continue
			}
			if !sameKey(t, plain, k) {
				t.Errorf("%s %s: decrypted to another key", f.name, algo)
			}
			for _, pw := range [][]byte{[]byte("s3cret"), []byte(""), nil} {
				if _, err := decryptKeyPEM(enc, pw); err != errBadPassword {
					t.Errorf("%s %s: password %q gave %v, want BAD_DECRYPT", f.name, algo, pw, err)
				}
			}
		}
	}
}

// TestDecryptKeyWrongPasswordLegacy: legacy PEM encryption has no MAC, so
// about one wrong password in 256 decrypts to garbage with valid padding;
// that must still be BAD_DECRYPT, not a key that fails later.
func TestDecryptKeyWrongPasswordLegacy(t *testing.T) {
	k := testKeys(t)["ec"]
	der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	//nolint:staticcheck // the legacy format is what is being tested
	block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", der, []byte("right"), x509.PEMCipherAES128)
	if err != nil {
		t.Fatal(err)
	}
	enc := pem.EncodeToMemory(block)
	plain, err := decryptKeyPEM(enc, []byte("right"))
	if err != nil || !sameKey(t, plain, k) {
		t.Fatalf("right password: %v", err)
	}
	for i := 0; i < 3000; i++ {
		pw := []byte(fmt.Sprintf("wrong-%d", i))
		if out, err := decryptKeyPEM(enc, pw); err != errBadPassword {
			t.Fatalf("password %q: got %v and %d bytes, want BAD_DECRYPT", pw, err, len(out))
		}
	}
}

func TestDecryptKeyPlain(t *testing.T) {
	k := testKeys(t)["ec"]
	in := pkcs8PEM(t, k)
	for _, pw := range [][]byte{nil, []byte("ignored")} {
		out, err := decryptKeyPEM(in, pw)
		if err != nil || !bytes.Equal(out, in) {
			t.Errorf("password %q: an unencrypted key changed (%v)", pw, err)
		}
	}
}
