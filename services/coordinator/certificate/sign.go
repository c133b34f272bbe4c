package certificate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// AlgorithmEd25519 is the only signature algorithm.
const AlgorithmEd25519 = "ed25519"

// Errors of Verify and Open. Test for them with errors.Is.
var (
	// ErrBadSignature means the signature does not match the certificate:
	// the certificate was changed after signing, or it was signed with
	// another key than the one given.
	ErrBadSignature = errors.New("certificate signature does not verify")
	// ErrMalformed means the input is not a signed certificate this
	// package can check: unknown algorithm, a signature that is not
	// base64 of 64 bytes, an empty or undecodable certificate, a public
	// key of the wrong size.
	ErrMalformed = errors.New("malformed signed certificate")
)

// SignedCertificate is a certificate with its signature. Certificate holds
// the canonical bytes that were signed; pretty-printing the envelope only
// adds whitespace, which Verify ignores.
type SignedCertificate struct {
	Certificate json.RawMessage `json:"certificate"`
	// Signature is the standard base64 of the Ed25519 signature of the
	// certificate's canonical bytes.
	Signature string `json:"signature"`
	// KeyID names the signing key (see KeyID); it is a hint for choosing
	// the public key and is not itself signed.
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
}

// Sign encodes cert canonically and signs it with key, naming the key
// keyID (use KeyID of the public key).
func Sign(cert Certificate, key ed25519.PrivateKey, keyID string) (SignedCertificate, error) {
	if len(key) != ed25519.PrivateKeySize {
		return SignedCertificate{}, fmt.Errorf("sign certificate: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	b, err := Encode(cert)
	if err != nil {
		return SignedCertificate{}, err
	}
	return SignedCertificate{
		Certificate: b,
		Signature:   base64.StdEncoding.EncodeToString(ed25519.Sign(key, b)),
		KeyID:       keyID,
		Algorithm:   AlgorithmEd25519,
	}, nil
}

// Verify checks that signed's signature was made by pub's private key
// over its certificate, and that the certificate is one this package can
// read. It returns an error wrapping ErrBadSignature when the signature
// does not match (tampered, or another key), ErrMalformed when the input
// cannot be checked at all.
func Verify(signed SignedCertificate, pub ed25519.PublicKey) error {
	_, err := Open(signed, pub)
	return err
}

// Open verifies signed like Verify and returns its certificate.
func Open(signed SignedCertificate, pub ed25519.PublicKey) (Certificate, error) {
	if signed.Algorithm != AlgorithmEd25519 {
		return Certificate{}, fmt.Errorf("%w: algorithm %q, want %q", ErrMalformed, signed.Algorithm, AlgorithmEd25519)
	}
	if len(pub) != ed25519.PublicKeySize {
		return Certificate{}, fmt.Errorf("%w: public key has %d bytes, want %d", ErrMalformed, len(pub), ed25519.PublicKeySize)
	}
	sig, err := base64.StdEncoding.DecodeString(signed.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Certificate{}, fmt.Errorf("%w: signature is not base64 of %d bytes", ErrMalformed, ed25519.SignatureSize)
	}
	if len(signed.Certificate) == 0 {
		return Certificate{}, fmt.Errorf("%w: no certificate", ErrMalformed)
	}
	if !ed25519.Verify(pub, signedBytes(signed.Certificate), sig) {
		if id := KeyID(pub); signed.KeyID != "" && signed.KeyID != id {
			return Certificate{}, fmt.Errorf("%w: it names key %s, the public key given is %s; get the key it was signed with", ErrBadSignature, signed.KeyID, id)
		}
		return Certificate{}, fmt.Errorf("%w: the certificate was changed after it was signed, or signed with another key", ErrBadSignature)
	}
	var c Certificate
	dec := json.NewDecoder(bytes.NewReader(signed.Certificate))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Certificate{}, fmt.Errorf("%w: signed, but not a certificate this version reads: %w", ErrMalformed, err)
	}
	if c.Format != FormatV1 {
		return Certificate{}, fmt.Errorf("%w: format %q, want %q", ErrMalformed, c.Format, FormatV1)
	}
	return c, nil
}

// signedBytes recovers the canonical bytes from a certificate that may
// have been pretty-printed: the canonical form is compact, and compacting
// removes only the whitespace between tokens. Input that is not JSON is
// checked as it is (and fails).
func signedBytes(raw []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// Signer issues signed certificates with one key.
type Signer struct {
	key    ed25519.PrivateKey
	keyID  string
	issuer string
	now    func() time.Time
}

// NewSigner returns a Signer that signs with key and names issuer in
// every certificate.
func NewSigner(key ed25519.PrivateKey, issuer string) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("new certificate signer: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if issuer == "" {
		return nil, errors.New("new certificate signer: empty issuer")
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	return &Signer{key: key, keyID: KeyID(pub), issuer: issuer, now: time.Now}, nil
}

// Issue builds and signs the certificate of j (see Build for its errors).
func (s *Signer) Issue(j *jobs.Job) (SignedCertificate, error) {
	c, err := Build(j, s.now(), s.issuer)
	if err != nil {
		return SignedCertificate{}, err
	}
	return Sign(c, s.key, s.keyID)
}

// KeyID names the signing key.
func (s *Signer) KeyID() string { return s.keyID }

// PublicKey is the key auditors verify with.
func (s *Signer) PublicKey() ed25519.PublicKey {
	pub, _ := s.key.Public().(ed25519.PublicKey)
	return pub
}
