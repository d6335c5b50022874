package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
)

// encryptPKCS8 wraps a PKCS#8 private key as an EncryptedPrivateKeyInfo,
// as `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it: PBES2 with PBKDF2
// (HMAC-SHA256, 2048 iterations, a 16-byte salt) and AES-256-CBC.
func encryptPKCS8(der, password []byte) ([]byte, error) {
	const iterations = 2048
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(der)%aes.BlockSize
	plain := append(append([]byte(nil), der...), make([]byte, pad)...)
	for i := len(der); i < len(plain); i++ {
		plain[i] = byte(pad)
	}
	data := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, plain)

	kdfParams, err := asn1.Marshal(struct {
		Salt []byte
		Iter int
		PRF  algorithm
	}{salt, iterations, algorithm{oidHMACSHA256, asn1.NullRawValue}})
	if err != nil {
		return nil, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	pbes2Params, err := asn1.Marshal(struct {
		KDF    algorithm
		Scheme algorithm
	}{
		algorithm{oidPBKDF2, asn1.RawValue{FullBytes: kdfParams}},
		algorithm{oidAES256CBC, asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Algo algorithm
		Data []byte
	}{algorithm{oidPBES2, asn1.RawValue{FullBytes: pbes2Params}}, data})
}

// algorithm is an X.509 AlgorithmIdentifier.
type algorithm struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)
