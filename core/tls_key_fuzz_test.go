package core

// Fuzz tests of encrypted private keys (tls_key.go): random PEM and
// passwords never panic and fail only with OpenSSL's reasons; keys the test
// encrypts (PKCS#8 PBES2 with every PRF and cipher decryptPKCS8 knows, and
// the legacy PEM form) decrypt back to the same key with the right password
// and give BAD_DECRYPT with a wrong or missing one.

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"hash"
	"sync"
	"testing"
)

var (
	fuzzKeysOnce sync.Once
	fuzzKeys     []crypto.Signer
)

// fuzzTestKeys are made once per process: RSA, two EC curves and Ed25519.
func fuzzTestKeys(t testing.TB) []crypto.Signer {
	fuzzKeysOnce.Do(func() {
		r, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			return
		}
		e256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		e384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		_, ed, _ := ed25519.GenerateKey(rand.Reader)
		fuzzKeys = []crypto.Signer{r, e256, e384, ed}
	})
	if len(fuzzKeys) == 0 {
		t.Fatal("no test keys")
	}
	return fuzzKeys
}

var fuzzPRFs = []struct {
	oid asn1.ObjectIdentifier // nil: the PRF field is left out (HMAC-SHA1 by default)
	h   func() hash.Hash
}{
	{nil, sha1.New},
	{oidHMACSHA1, sha1.New},
	{oidHMACSHA256, sha256.New},
	{oidHMACSHA384, sha512.New384},
	{oidHMACSHA512, sha512.New},
}

var fuzzCiphers = []struct {
	oid    asn1.ObjectIdentifier
	keyLen int
	block  func([]byte) (cipher.Block, error)
}{
	{oidAES128CBC, 16, aes.NewCipher},
	{oidAES192CBC, 24, aes.NewCipher},
	{oidAES256CBC, 32, aes.NewCipher},
	{oidDESEDE3CBC, 24, des.NewTripleDESCipher},
}

// encryptPKCS8 writes der as an "ENCRYPTED PRIVATE KEY" the way OpenSSL's
// pkcs8 -topk8 -v2 does: PBES2, PBKDF2, CBC with PKCS#7 padding.
func encryptPKCS8(t testing.TB, der, password, salt []byte, iter, prf, ciph int, withKeyLength bool) []byte {
	t.Helper()
	p, c := fuzzPRFs[prf], fuzzCiphers[ciph]
	key, err := pbkdf2.Key(p.h, string(password), salt, iter, c.keyLen)
	if err != nil {
		t.Fatal(err)
	}
	block, err := c.block(key)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, block.BlockSize())
	_, _ = rand.Read(iv)
	pad := block.BlockSize() - len(der)%block.BlockSize()
	plain := append(append([]byte(nil), der...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	enc := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(enc, plain)

	kdf := struct {
		Salt      []byte
		Iter      int
		KeyLength int                      `asn1:"optional"`
		PRF       pkix.AlgorithmIdentifier `asn1:"optional"`
	}{Salt: salt, Iter: iter}
	if withKeyLength {
		kdf.KeyLength = c.keyLen
	}
	if p.oid != nil {
		kdf.PRF = pkix.AlgorithmIdentifier{Algorithm: p.oid, Parameters: asn1.NullRawValue}
	}
	kdfDER := mustMarshal(t, kdf)
	params := mustMarshal(t, struct {
		KDF    pkix.AlgorithmIdentifier
		Scheme struct {
			Algorithm asn1.ObjectIdentifier
			IV        []byte
		}
	}{
		KDF: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfDER}},
		Scheme: struct {
			Algorithm asn1.ObjectIdentifier
			IV        []byte
		}{c.oid, iv},
	})
	out := mustMarshal(t, struct {
		Algo pkix.AlgorithmIdentifier
		Data []byte
	}{pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}}, enc})
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: out})
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// legacyKeyBlock is the key in the form a legacy encrypted PEM holds it.
func legacyKeyBlock(t testing.TB, k crypto.Signer) (string, []byte) {
	t.Helper()
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return "EC PRIVATE KEY", der
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return "PRIVATE KEY", der
}

// samePEMKey reports whether the first block of data holds key k.
func samePEMKey(data []byte, k crypto.Signer) bool {
	block, _ := pem.Decode(data)
	if block == nil {
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
		return false
	}
	if err != nil {
		return false
	}
	eq, ok := got.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && eq.Equal(k)
}

// wrongPassword differs from pw as a PBKDF2/HMAC key too (HMAC pads short
// keys with zeros, so appending a NUL would give the same key).
func wrongPassword(pw []byte) []byte {
	if len(pw) == 0 {
		return []byte("x")
	}
	w := append([]byte(nil), pw...)
	w[0] ^= 0x5a
	return w
}

func FuzzDecryptKeyRoundTrip(f *testing.F) {
	f.Add([]byte("s3cret pass"), []byte("saltsalt"), uint8(7), uint8(2), uint8(2), uint8(1), false, false)
	f.Add([]byte(""), []byte{}, uint8(0), uint8(0), uint8(3), uint8(0), false, true)
	f.Add([]byte("\x00\xff"), []byte("s"), uint8(200), uint8(4), uint8(0), uint8(3), false, false)
	f.Add([]byte("pw"), []byte("x"), uint8(1), uint8(0), uint8(4), uint8(0), true, false)
	f.Add([]byte("pw"), []byte("x"), uint8(1), uint8(0), uint8(2), uint8(2), true, true)
	f.Fuzz(func(t *testing.T, password, salt []byte, iter, prf, ciph, keySel uint8, legacy, extras bool) {
		if len(password) > 256 || len(salt) > 64 {
			return
		}
		keys := fuzzTestKeys(t)
		k := keys[int(keySel)%len(keys)]
		var enc []byte
		if legacy {
			typ, der := legacyKeyBlock(t, k)
			algs := []x509.PEMCipher{x509.PEMCipherDES, x509.PEMCipher3DES, x509.PEMCipherAES128, x509.PEMCipherAES192, x509.PEMCipherAES256}
			//nolint:staticcheck // the legacy format is what is being tested
			block, err := x509.EncryptPEMBlock(rand.Reader, typ, der, password, algs[int(ciph)%len(algs)])
			if err != nil {
				t.Fatal(err)
			}
			enc = pem.EncodeToMemory(block)
		} else {
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			enc = encryptPKCS8(t, der, password, salt, 1+int(iter), int(prf)%len(fuzzPRFs), int(ciph)%len(fuzzCiphers), iter%2 == 0)
		}
		other := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"X": "y"}, Bytes: salt})
		if extras {
			// A certificate before the key and text after it: the
			// certificate stays, the key is decrypted.
			enc = append(append(other, enc...), "trailing text\n"...)
		}

		plain, err := decryptKeyPEM(enc, password)
		if err != nil {
			t.Fatalf("right password %q: %v", password, err)
		}
		keyPEM := plain
		if extras {
			cert, rest := pem.Decode(plain)
			if cert == nil || cert.Type != "CERTIFICATE" || !bytes.Equal(cert.Bytes, salt) || cert.Headers["X"] != "y" {
				t.Fatalf("the certificate block did not survive: %q", plain)
			}
			keyPEM = rest
		}
		if !samePEMKey(keyPEM, k) {
			t.Fatalf("decrypted to another key or an unparsable one:\n%s", plain)
		}
		if block, _ := pem.Decode(keyPEM); x509.IsEncryptedPEMBlock(block) || block.Type == "ENCRYPTED PRIVATE KEY" { //nolint:staticcheck
			t.Fatalf("the output is still encrypted: %s", block.Type)
		}
		// The output is accepted again as it is (no password needed).
		if again, err := decryptKeyPEM(plain, nil); err != nil || !bytes.Equal(again, plain) {
			t.Fatalf("decrypted PEM is not left alone: %v", err)
		}
		for _, pw := range [][]byte{wrongPassword(password), nil} {
			if out, err := decryptKeyPEM(enc, pw); err != errBadPassword {
				t.Fatalf("password %q (right %q): got %v and %d bytes, want BAD_DECRYPT", pw, password, err, len(out))
			}
		}
	})
}

// pbkdf2Iterations finds the largest PBKDF2 iteration count of the
// PKCS#8 blocks in data, so the fuzzer's inputs stay fast (a large count
// is slow by design, for OpenSSL as for us).
func pbkdf2Iterations(data []byte) int {
	most := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return most
		}
		if block.Type != "ENCRYPTED PRIVATE KEY" {
			continue
		}
		var enc pkcs8Encrypted
		var params pbes2Params
		var kdf pbkdf2Params
		if _, err := asn1.Unmarshal(block.Bytes, &enc); err != nil {
			continue
		}
		if _, err := asn1.Unmarshal(enc.Algo.Parameters.FullBytes, &params); err != nil {
			continue
		}
		if _, err := asn1.Unmarshal(params.KDF.Parameters.FullBytes, &kdf); err != nil {
			continue
		}
		most = max(most, kdf.Iter)
	}
}

var tlsKeyReasons = map[string]bool{
	"BAD_DECRYPT": true, "UNSUPPORTED_ENCRYPTION_ALGORITHM": true,
	"UNSUPPORTED_KEY_DERIVATION_FUNCTION": true, "UNSUPPORTED_PRF": true, "UNSUPPORTED_CIPHER": true,
}

// FuzzDecryptKeyPEM: random PEM (seeded with real encrypted keys) and
// random passwords. Never a panic; errors are OpenSSL's; input without an
// encrypted block comes back as it is; a successful decryption keeps every
// block, in order, with the encrypted ones now plain keys that parse; and
// an encrypted block with no password is BAD_DECRYPT.
func FuzzDecryptKeyPEM(f *testing.F) {
	keys := fuzzTestKeys(f)
	der, _ := x509.MarshalPKCS8PrivateKey(keys[1])
	f.Add(encryptPKCS8(f, der, []byte("pw"), []byte("saltsalt"), 3, 2, 2, true), []byte("pw"), false)
	f.Add(encryptPKCS8(f, der, []byte("pw"), []byte("saltsalt"), 2, 0, 3, false), []byte("pw"), false)
	typ, ecDER := legacyKeyBlock(f, keys[1])
	//nolint:staticcheck
	if block, err := x509.EncryptPEMBlock(rand.Reader, typ, ecDER, []byte("pw"), x509.PEMCipherAES128); err == nil {
		f.Add(pem.EncodeToMemory(block), []byte("pw"), false)
		f.Add(pem.EncodeToMemory(block), []byte("wrong"), true)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), []byte(nil), true)
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"), []byte("x"), false)
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMAA=\n-----END RSA PRIVATE KEY-----\n"), []byte("x"), false)
	f.Add([]byte("not pem at all"), []byte{}, false)
	f.Fuzz(func(t *testing.T, data, password []byte, nilPassword bool) {
		if pbkdf2Iterations(data) > 1<<12 {
			return
		}
		if nilPassword {
			password = nil
		}
		encrypted := 0
		var inBlocks []*pem.Block
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			inBlocks = append(inBlocks, b)
			if b.Type == "ENCRYPTED PRIVATE KEY" || x509.IsEncryptedPEMBlock(b) { //nolint:staticcheck
				encrypted++
			}
		}

		out, err := decryptKeyPEM(data, password)
		if err != nil {
			var te *TLSError
			if !errors.As(err, &te) || !tlsKeyReasons[te.Reason] {
				t.Fatalf("error %#v is not one of OpenSSL's", err)
			}
			if encrypted == 0 {
				t.Fatalf("no encrypted block, yet %v", err)
			}
			if out != nil {
				t.Fatalf("an error came with %d bytes", len(out))
			}
			return
		}
		if encrypted == 0 {
			if !bytes.Equal(out, data) {
				t.Fatal("input without an encrypted key was changed")
			}
			return
		}
		if password == nil {
			t.Fatal("an encrypted key was decrypted without a password")
		}
		var outBlocks []*pem.Block
		for rest := out; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				if len(bytes.TrimSpace(rest)) != 0 {
					t.Fatalf("the output has trailing bytes %q", rest)
				}
				break
			}
			outBlocks = append(outBlocks, b)
		}
		if len(outBlocks) != len(inBlocks) {
			t.Fatalf("%d blocks in, %d out", len(inBlocks), len(outBlocks))
		}
		for i, in := range inBlocks {
			o := outBlocks[i]
			switch {
			case in.Type == "ENCRYPTED PRIVATE KEY":
				if o.Type != "PRIVATE KEY" {
					t.Fatalf("block %d: %s became %s", i, in.Type, o.Type)
				}
				if _, err := x509.ParsePKCS8PrivateKey(o.Bytes); err != nil {
					t.Fatalf("block %d: the decrypted key does not parse: %v", i, err)
				}
			case x509.IsEncryptedPEMBlock(in): //nolint:staticcheck
				if o.Type != in.Type || x509.IsEncryptedPEMBlock(o) || !parsesAsKey(o.Bytes) { //nolint:staticcheck
					t.Fatalf("block %d: legacy %s decrypted to %s that does not parse", i, in.Type, o.Type)
				}
			default:
				if o.Type != in.Type || !bytes.Equal(o.Bytes, in.Bytes) || len(o.Headers) != len(in.Headers) {
					t.Fatalf("block %d (%s) changed", i, in.Type)
				}
				for k, v := range in.Headers {
					if o.Headers[k] != v {
						t.Fatalf("block %d: header %q changed", i, k)
					}
				}
			}
		}
	})
}
