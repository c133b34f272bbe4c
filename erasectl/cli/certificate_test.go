package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/certificate"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

const certJobID = "0190a3b4-0000-7000-8000-0000000000c1"

// signedFixture signs the certificate of a finished billing erasure and
// returns it with the public key's PEM file.
func signedFixture(t *testing.T) (apiv1.SignedCertificate, ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	now := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	j, err := jobs.New(certJobID, jobs.Request{AccountID: "acc-9", Origin: jobs.OriginAPI, RequestedBy: "privacy:jdoe", Reason: "DSR 4711"},
		[]jobs.TaskSpec{{Category: "billing", Stage: "erase", Action: "pseudonymise"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "billing", Stage: "erase"}, Generation: 1, Succeeded: true, Items: 7, Attempt: 1, At: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := certificate.Build(j, now.Add(time.Hour), "lethe-coordinator")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := certificate.Sign(c, priv, certificate.KeyID(pub))
	if err != nil {
		t.Fatal(err)
	}
	return apiv1.SignedCertificate(sc), pub, priv
}

func writePEM(t *testing.T, dir string, pub ed25519.PublicKey) string {
	t.Helper()
	b, err := certificate.PublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pub-"+certificate.KeyID(pub)+".pem")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCertificateVerifyOffline verifies files with the API pointed at a
// closed port: verify must not need the network.
func TestCertificateVerifyOffline(t *testing.T) {
	sc, pub, _ := signedFixture(t)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	var file bytes.Buffer
	if err := writeJSON(&file, sc); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "cert.json")
	tampered := filepath.Join(dir, "tampered.json")
	notJSON := filepath.Join(dir, "not.json")
	if err := os.WriteFile(good, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// 7 items purged become 9.
	changed := bytes.Replace(file.Bytes(), []byte(`"items_purged": 7`), []byte(`"items_purged": 9`), 1)
	if bytes.Equal(changed, file.Bytes()) {
		t.Fatalf("fixture lacks the items count:\n%s", file.Bytes())
	}
	if err := os.WriteFile(tampered, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notJSON, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	key, wrongKey := writePEM(t, dir, pub), writePEM(t, dir, otherPub)
	offline := map[string]string{EnvAPIURL: "http://127.0.0.1:1"}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr string
	}{
		{"good", []string{good, "--public-key", key}, ExitOK, []string{"signature:", "valid (ed25519, key " + certificate.KeyID(pub) + ")",
			certJobID, "acc-9", "privacy:jdoe (api)", "DSR 4711", "pseudonymise", "AO §147(3), HGB §257(4)", "deadline:"}, ""},
		{"good json", []string{good, "--public-key", key, "-o", "json"}, ExitOK, []string{`"valid": true`, `"job_id": "` + certJobID}, ""},
		{"tampered", []string{tampered, "--public-key", key}, ExitBadCertificate, nil, "INVALID"},
		{"wrong key", []string{good, "--public-key", wrongKey}, ExitBadCertificate, nil, "names key " + certificate.KeyID(pub)},
		{"not a certificate", []string{notJSON, "--public-key", key}, ExitBadCertificate, nil, "not a signed certificate"},
		{"private key given", []string{good, "--public-key", good}, ExitUsage, nil, "--public-key"},
		{"no such file", []string{filepath.Join(dir, "missing.json"), "--public-key", key}, ExitUsage, nil, "read the certificate"},
		{"no key flag", []string{good}, ExitUsage, nil, "needs --public-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, offline, append([]string{"certificate", "verify"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", r.code, tt.wantCode, r.stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q: %s", tt.wantStderr, r.stderr)
			}
		})
	}
}

func TestCertificateFetchAndKey(t *testing.T) {
	sc, pub, _ := signedFixture(t)
	pemBytes, _ := certificate.PublicKeyPEM(pub)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/erasures/" + certJobID + "/certificate":
			_ = json.NewEncoder(w).Encode(sc)
		case "/v1/erasures/0190a3b4-0000-7000-8000-0000000000c2/certificate":
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(apiv1.ErrorBody{Error: apiv1.ErrorDetail{Code: apiv1.CodeConflict, Message: "job is running"}})
		case "/v1/certificate-key":
			_ = json.NewEncoder(w).Encode(apiv1.CertificateKey{KeyID: certificate.KeyID(pub), Algorithm: "ed25519", PublicKey: string(pemBytes), Fingerprint: certificate.Fingerprint(pub)})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(apiv1.ErrorBody{Error: apiv1.ErrorDetail{Code: apiv1.CodeNotFound, Message: "no job with this id"}})
		}
	}))
	defer srv.Close()
	env := map[string]string{EnvAPIURL: srv.URL}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.json"), filepath.Join(dir, "key.pem")

	r := runCLI(t, env, "certificate", certJobID, "--out", certFile)
	if r.code != ExitOK || !strings.Contains(r.stdout, "not checked here") || !strings.Contains(r.stdout, "acc-9") || !strings.Contains(r.stderr, "written to") {
		t.Fatalf("fetch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, env, "certificate", "key", "--out", keyFile)
	if r.code != ExitOK || !strings.Contains(r.stderr, certificate.Fingerprint(pub)) {
		t.Fatalf("key: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, env, "certificate", "verify", certFile, "--public-key", keyFile)
	if r.code != ExitOK {
		t.Fatalf("verify the fetched file: exit %d\n%s", r.code, r.stderr)
	}
	if r = runCLI(t, env, "certificate", certJobID, "-o", "json"); r.code != ExitOK || !strings.Contains(r.stdout, `"signature"`) {
		t.Fatalf("fetch json: exit %d\n%s", r.code, r.stdout)
	}
	if r = runCLI(t, env, "certificate", "0190a3b4-0000-7000-8000-0000000000c2"); r.code != ExitConflict {
		t.Errorf("running job: exit %d, want %d", r.code, ExitConflict)
	}
	if r = runCLI(t, env, "certificate", "0190a3b4-0000-7000-8000-0000000000c3"); r.code != ExitNotFound {
		t.Errorf("unknown job: exit %d, want %d", r.code, ExitNotFound)
	}
	if r = runCLI(t, env, "certificate"); r.code != ExitUsage {
		t.Errorf("no argument: exit %d, want %d", r.code, ExitUsage)
	}
}
