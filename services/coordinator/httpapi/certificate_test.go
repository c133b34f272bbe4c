package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/certificate"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// jobsService serves the jobs it holds by id.
type jobsService struct {
	recordingService
	jobs map[string]*jobs.Job
}

func (s *jobsService) Get(_ context.Context, id string) (*jobs.Job, error) {
	if j, ok := s.jobs[id]; ok {
		return j, nil
	}
	return nil, jobs.ErrNotFound
}

func TestCertificateEndpoints(t *testing.T) {
	const (
		doneID    = "0190a3b4-0000-7000-8000-00000000000d"
		runningID = "0190a3b4-0000-7000-8000-00000000000e"
	)
	now := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	req := jobs.Request{AccountID: "acc-7", Origin: jobs.OriginAPI, RequestedBy: "privacy:jdoe", Reason: "DSR 4711"}
	plan := []jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}}
	done, _ := jobs.New(doneID, req, plan, now)
	if _, err := done.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "contacts", Stage: "erase"}, Generation: 1, Succeeded: true, Items: 40, Attempt: 1, At: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	running, _ := jobs.New(runningID, req, plan, now)
	svc := &jobsService{jobs: map[string]*jobs.Job{doneID: done, runningID: running}}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := certificate.NewSigner(priv, "lethe-coordinator")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(testHandler(t, svc, Options{Certificates: signer}, apiauth.RoleAuditor))
	defer srv.Close()
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, raw
	}

	code, body := get("/v1/certificate-key")
	if code != http.StatusOK {
		t.Fatalf("key: %d %s", code, body)
	}
	var key apiv1.CertificateKey
	if err := json.Unmarshal(body, &key); err != nil {
		t.Fatal(err)
	}
	pub, err := certificate.ParsePublicKeyPEM([]byte(key.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if key.KeyID != signer.KeyID() || key.Algorithm != "ed25519" || key.Fingerprint != certificate.Fingerprint(pub) {
		t.Errorf("key answer %+v", key)
	}

	code, body = get("/v1/erasures/" + doneID + "/certificate")
	if code != http.StatusOK {
		t.Fatalf("certificate: %d %s", code, body)
	}
	var sc apiv1.SignedCertificate
	if err := json.Unmarshal(body, &sc); err != nil {
		t.Fatal(err)
	}
	c, err := certificate.Open(certificate.SignedCertificate{Certificate: sc.Certificate, Signature: sc.Signature, KeyID: sc.KeyID, Algorithm: sc.Algorithm}, pub)
	if err != nil {
		t.Fatalf("verify what the API served: %v", err)
	}
	if c.JobID != doneID || c.ItemsPurged != 40 || c.Status != "completed" {
		t.Errorf("certificate %+v", c)
	}

	tests := []struct {
		name     string
		path     string
		wantCode int
		wantErr  string
		wantMsg  string
	}{
		{"unknown job", "/v1/erasures/0190a3b4-0000-7000-8000-000000000999/certificate", http.StatusNotFound, apiv1.CodeNotFound, "no job"},
		{"running job", "/v1/erasures/" + runningID + "/certificate", http.StatusConflict, apiv1.CodeConflict, "is running"},
		{"bad id", "/v1/erasures/not-a-uuid/certificate", http.StatusBadRequest, apiv1.CodeInvalidArgument, "UUID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(tt.path)
			var e apiv1.ErrorBody
			_ = json.Unmarshal(body, &e)
			if code != tt.wantCode || e.Error.Code != tt.wantErr || !strings.Contains(e.Error.Message, tt.wantMsg) {
				t.Fatalf("%d %s, want %d %s saying %q", code, body, tt.wantCode, tt.wantErr, tt.wantMsg)
			}
		})
	}

	off := httptest.NewServer(testHandler(t, svc, Options{}, apiauth.RoleAuditor))
	defer off.Close()
	resp, err := http.Get(off.URL + "/v1/certificate-key")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without an issuer: %d, want 404", resp.StatusCode)
	}
}
