package certificate

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/lethe-privacy/lethe/services/coordinator/keyfile"
)

// PEM block types of the key files.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// ErrNoKey means the key file does not exist.
var ErrNoKey = errors.New("no signing key file")

// LoadKey reads an Ed25519 private key from a PEM file (PKCS#8, "PRIVATE
// KEY", as `openssl genpkey -algorithm ed25519` writes). A missing file is
// an error wrapping ErrNoKey. The key itself never appears in an error.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemPrivate {
		return nil, fmt.Errorf("certificate signing key %s: not a PEM %q block", path, pemPrivate)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate signing key %s: not PKCS#8", path)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("certificate signing key %s: %T, want an Ed25519 key", path, k)
	}
	return key, nil
}

// LoadOrCreateKey reads the private key at path, or, when there is no file,
// creates a new key there (mode 0600, its directory 0700) and reports
// created. It is for development: in production the key is issued and
// stored by the operator (README.md), and a missing file must stop the
// coordinator (LoadKey). Two processes creating the key at once end up
// with the same key: the file is created exclusively and the loser loads
// the winner's.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = LoadKey(path)
	if !errors.Is(err, ErrNoKey) {
		return key, false, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate certificate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("encode certificate signing key: %w", err)
	}
	// Two coordinators starting together must not see each other's file
	// half-written.
	made, err := keyfile.Create(path, pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}))
	if err != nil {
		return nil, false, fmt.Errorf("create certificate signing key file: %w", err)
	}
	if !made {
		key, err = LoadKey(path)
		return key, false, err
	}
	return priv, true, nil
}

// PublicKeyPEM encodes pub as a PEM "PUBLIC KEY" block (PKIX), the form
// auditors receive and `openssl pkey -pubin` reads.
func PublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// ParsePublicKeyPEM reads an Ed25519 public key from a PEM "PUBLIC KEY"
// block. It returns an error wrapping ErrMalformed otherwise.
func ParsePublicKeyPEM(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemPublic {
		return nil, fmt.Errorf("%w: public key is not a PEM %q block", ErrMalformed, pemPublic)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrMalformed, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: public key is %T, want Ed25519", ErrMalformed, k)
	}
	return pub, nil
}

// LoadPublicKey reads an Ed25519 public key from a PEM file (see
// ParsePublicKeyPEM).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	pub, err := ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return pub, nil
}

// Fingerprint is the SHA-256 of pub's PKIX (DER) encoding in hex, the same
// as `openssl pkey -pubin -in key.pem -outform DER | sha256sum`.
func Fingerprint(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// KeyID names a key by the first 16 hex digits of its Fingerprint.
func KeyID(pub ed25519.PublicKey) string {
	fp := Fingerprint(pub)
	if len(fp) < 16 {
		return ""
	}
	return "ed25519-" + fp[:16]
}
