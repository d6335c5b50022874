package core

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"hash"
)

// Encrypted private keys, as Python's load_cert_chain(password=...) takes
// them: PKCS#8 "ENCRYPTED PRIVATE KEY" blocks (PBES2 with PBKDF2 and AES or
// 3DES, what OpenSSL writes today) and legacy "Proc-Type: 4,ENCRYPTED" PEM.

// decryptKeyPEM returns the PEM with every encrypted private key decrypted.
// Unencrypted input comes back as it is.
func decryptKeyPEM(data, password []byte) ([]byte, error) {
	var out bytes.Buffer
	rest := data
	changed := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY":
			der, err := decryptPKCS8(block.Bytes, password)
			if err != nil {
				return nil, err
			}
			block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
			changed = true
		case x509.IsEncryptedPEMBlock(block): //nolint:staticcheck // legacy format OpenSSL still reads
			if password == nil {
				return nil, errBadPassword
			}
			der, err := x509.DecryptPEMBlock(block, password) //nolint:staticcheck
			if err != nil || !parsesAsKey(der) {
				// Legacy PEM has no MAC: about one wrong password in 256
				// passes the padding check and yields garbage.
				return nil, errBadPassword
			}
			block = &pem.Block{Type: block.Type, Bytes: der}
			changed = true
		}
		_ = pem.Encode(&out, block)
	}
	if !changed {
		return data, nil
	}
	return out.Bytes(), nil
}

// parsesAsKey reports whether der is a private key in one of the forms a
// legacy PEM block holds.
func parsesAsKey(der []byte) bool {
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return true
	}
	if _, err := x509.ParseECPrivateKey(der); err == nil {
		return true
	}
	_, err := x509.ParsePKCS8PrivateKey(der)
	return err == nil
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

type pkcs8Encrypted struct {
	Algo struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue
	}
	Data []byte
}

type pbes2Params struct {
	KDF struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue
	}
	Scheme struct {
		Algorithm asn1.ObjectIdentifier
		IV        []byte
	}
}

type pbkdf2Params struct {
	Salt      []byte
	Iter      int
	KeyLength int `asn1:"optional"`
	PRF       struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	} `asn1:"optional"`
}

func decryptPKCS8(der, password []byte) ([]byte, error) {
	if password == nil {
		return nil, errBadPassword
	}
	var enc pkcs8Encrypted
	if _, err := asn1.Unmarshal(der, &enc); err != nil || !enc.Algo.Algorithm.Equal(oidPBES2) {
		return nil, &TLSError{Reason: "UNSUPPORTED_ENCRYPTION_ALGORITHM", Text: "unsupported encryption algorithm"}
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(enc.Algo.Parameters.FullBytes, &params); err != nil || !params.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, &TLSError{Reason: "UNSUPPORTED_KEY_DERIVATION_FUNCTION", Text: "unsupported key derivation function"}
	}
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(params.KDF.Parameters.FullBytes, &kdf); err != nil {
		return nil, errBadPassword
	}
	prf := sha1.New
	switch {
	case len(kdf.PRF.Algorithm) == 0 || kdf.PRF.Algorithm.Equal(oidHMACSHA1):
	case kdf.PRF.Algorithm.Equal(oidHMACSHA256):
		prf = sha256.New
	case kdf.PRF.Algorithm.Equal(oidHMACSHA384):
		prf = sha512.New384
	case kdf.PRF.Algorithm.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, &TLSError{Reason: "UNSUPPORTED_PRF", Text: "unsupported prf"}
	}
	var keyLen int
	var newBlock func([]byte) (cipher.Block, error)
	switch {
	case params.Scheme.Algorithm.Equal(oidAES128CBC):
		keyLen, newBlock = 16, aes.NewCipher
	case params.Scheme.Algorithm.Equal(oidAES192CBC):
		keyLen, newBlock = 24, aes.NewCipher
	case params.Scheme.Algorithm.Equal(oidAES256CBC):
		keyLen, newBlock = 32, aes.NewCipher
	case params.Scheme.Algorithm.Equal(oidDESEDE3CBC):
		keyLen, newBlock = 24, des.NewTripleDESCipher
	default:
		return nil, &TLSError{Reason: "UNSUPPORTED_CIPHER", Text: "unsupported cipher"}
	}
	key, err := pbkdf2.Key(func() hash.Hash { return prf() }, string(password), kdf.Salt, kdf.Iter, keyLen)
	if err != nil {
		return nil, errBadPassword
	}
	block, err := newBlock(key)
	if err != nil || len(params.Scheme.IV) != block.BlockSize() || len(enc.Data)%block.BlockSize() != 0 || len(enc.Data) == 0 {
		return nil, errBadPassword
	}
	plain := make([]byte, len(enc.Data))
	cipher.NewCBCDecrypter(block, params.Scheme.IV).CryptBlocks(plain, enc.Data)
	pad := int(plain[len(plain)-1])
	if pad == 0 || pad > block.BlockSize() || pad > len(plain) {
		return nil, errBadPassword
	}
	for _, b := range plain[len(plain)-pad:] {
		if int(b) != pad {
			return nil, errBadPassword
		}
	}
	plain = plain[:len(plain)-pad]
	if _, err := x509.ParsePKCS8PrivateKey(plain); err != nil {
		return nil, errBadPassword
	}
	return plain, nil
}
