package apiv1

import "encoding/json"

// SignedCertificate answers GET /v1/erasures/{id}/certificate: the erasure
// certificate of a job that ended, signed by the coordinator. Certificate
// holds the exact JSON that was signed (compact; whitespace added by a
// pretty-printer does not change what verifies). Signature is the standard
// base64 of the Ed25519 signature, KeyID names the key (see
// CertificateKey). Verify it offline with `erasectl certificate verify`.
type SignedCertificate struct {
	Certificate json.RawMessage `json:"certificate"`
	Signature   string          `json:"signature"`
	KeyID       string          `json:"key_id"`
	Algorithm   string          `json:"algorithm"`
}

// CertificateKey answers GET /v1/certificate-key: the public key that
// verifies the coordinator's certificates, as a PEM "PUBLIC KEY" block,
// with its id and SHA-256 fingerprint (of the DER encoding, hex).
type CertificateKey struct {
	KeyID       string `json:"key_id"`
	Algorithm   string `json:"algorithm"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
}
