package apiclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// GetCertificate returns the signed erasure certificate of job id (GET
// /v1/erasures/{id}/certificate). An unknown job is an *APIError with
// status 404, a job that has not ended one with status 409.
func (c *Client) GetCertificate(ctx context.Context, id string) (apiv1.SignedCertificate, error) {
	if id == "" {
		return apiv1.SignedCertificate{}, fmt.Errorf("get certificate: %w: empty job id", ErrInvalidArgument)
	}
	var out apiv1.SignedCertificate
	if err := c.do(ctx, http.MethodGet, "/v1/erasures/"+url.PathEscape(id)+"/certificate", nil, nil, &out); err != nil {
		return apiv1.SignedCertificate{}, fmt.Errorf("get certificate of job %s: %w", id, err)
	}
	return out, nil
}

// GetCertificateKey returns the public key that verifies the coordinator's
// certificates (GET /v1/certificate-key).
func (c *Client) GetCertificateKey(ctx context.Context) (apiv1.CertificateKey, error) {
	var out apiv1.CertificateKey
	if err := c.do(ctx, http.MethodGet, "/v1/certificate-key", nil, nil, &out); err != nil {
		return apiv1.CertificateKey{}, fmt.Errorf("get certificate key: %w", err)
	}
	return out, nil
}
