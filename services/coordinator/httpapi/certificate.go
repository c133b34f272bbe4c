package httpapi

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/certificate"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// CertificateIssuer signs erasure certificates.
type CertificateIssuer interface {
	// Issue returns the signed certificate of j, or an error wrapping
	// jobs.ErrConflict when j has not ended.
	Issue(j *jobs.Job) (certificate.SignedCertificate, error)
	// PublicKey verifies what Issue signs.
	PublicKey() ed25519.PublicKey
}

var _ CertificateIssuer = (*certificate.Signer)(nil)

func (s *server) certificateRoutes(mux *http.ServeMux) {
	if s.opts.Certificates == nil {
		return
	}
	s.route(mux, "GET /v1/erasures/{id}/certificate", s.certificate)
	s.route(mux, "GET /v1/certificate-key", s.certificateKey)
}

// certificate answers with the signed certificate of a job that ended:
// 404 for an unknown job, 409 (saying its state) for a running one.
func (s *server) certificate(w http.ResponseWriter, r *http.Request) {
	id, ok := pathJobID(w, r)
	if !ok {
		return
	}
	j, err := s.svc.Get(r.Context(), id)
	if err != nil {
		s.serviceError(w, "get job for certificate", err)
		return
	}
	sc, err := s.opts.Certificates.Issue(j)
	if errors.Is(err, jobs.ErrConflict) {
		writeError(w, http.StatusConflict, apiv1.CodeConflict,
			fmt.Sprintf("job %s is %s; its certificate is issued once it is erased, completed, failed or cancelled", j.ID, j.Status))
		return
	}
	if err != nil {
		// Not a store failure: the job cannot be certified as it stands.
		s.log.Error("issue certificate", zap.String("job_id", j.ID), zap.Error(err))
		writeError(w, http.StatusInternalServerError, apiv1.CodeInternal, "the certificate of this job could not be issued; see the coordinator's log")
		return
	}
	writeJSON(w, http.StatusOK, apiv1.SignedCertificate{
		Certificate: sc.Certificate, Signature: sc.Signature, KeyID: sc.KeyID, Algorithm: sc.Algorithm,
	})
}

// certificateKey answers with the public key auditors verify with.
func (s *server) certificateKey(w http.ResponseWriter, _ *http.Request) {
	pub := s.opts.Certificates.PublicKey()
	pemBytes, err := certificate.PublicKeyPEM(pub)
	if err != nil {
		s.log.Error("encode certificate public key", zap.Error(err))
		writeError(w, http.StatusInternalServerError, apiv1.CodeInternal, "the public key could not be encoded")
		return
	}
	writeJSON(w, http.StatusOK, apiv1.CertificateKey{
		KeyID: certificate.KeyID(pub), Algorithm: certificate.AlgorithmEd25519,
		PublicKey: string(pemBytes), Fingerprint: certificate.Fingerprint(pub),
	})
}
