package app

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/certificate"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
)

// CertificateIssuerName is the issuer every certificate names.
const CertificateIssuerName = "lethe-coordinator"

// certificateIssuer loads the certificate signing key named by the
// configuration — creating it when it is missing and CertificateKeyCreate
// allows (development) — and logs its public fingerprint, never the key.
// An empty path turns certificates off (nil).
func certificateIssuer(cfg Config, log *zap.Logger) (httpapi.CertificateIssuer, error) {
	if cfg.CertificateKey == "" {
		return nil, nil
	}
	var (
		key     ed25519.PrivateKey
		created bool
		err     error
	)
	if cfg.CertificateKeyCreate {
		key, created, err = certificate.LoadOrCreateKey(cfg.CertificateKey)
	} else {
		key, err = certificate.LoadKey(cfg.CertificateKey)
	}
	if errors.Is(err, certificate.ErrNoKey) {
		return nil, fmt.Errorf("%w: issue one (see services/coordinator/certificate/README.md), or set LETHE_CERTIFICATE_KEY to its path", err)
	}
	if err != nil {
		return nil, err
	}
	signer, err := certificate.NewSigner(key, CertificateIssuerName)
	if err != nil {
		return nil, err
	}
	fields := []zap.Field{zap.String("key_id", signer.KeyID()), zap.String("fingerprint_sha256", certificate.Fingerprint(signer.PublicKey())), zap.String("path", cfg.CertificateKey)}
	if created {
		log.Warn("created a new certificate signing key; publish its public key (GET /v1/certificate-key) to auditors", fields...)
	} else {
		log.Info("certificate signing key loaded", fields...)
	}
	return signer, nil
}
