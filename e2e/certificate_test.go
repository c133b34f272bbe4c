package e2e

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/cli"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/coordinator/certificate"
)

// TestCertificateOfAnErasureVerifiesOfflineAndDetectsTampering walks the
// auditor's flow: an account is erased, its certificate fetched with
// erasectl and verified with the key the coordinator publishes, without the
// network; one changed byte makes verification fail.
func TestCertificateOfAnErasureVerifiesOfflineAndDetectsTampering(t *testing.T) {
	t.Parallel()
	keyPath := filepath.Join(t.TempDir(), "keys", "certificate.pem")
	p := startPipelineWith(t, func(c *app.Config) {
		c.CertificateKey = keyPath
		c.CertificateKeyCreate = true
	})
	p.startWorker(t, p.contacts)
	p.seed(t, 200, "acc-cert")
	before := p.footprint(t, "acc-cert")
	if before == 0 {
		t.Fatal("nothing seeded")
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key file: %v", err)
	}

	if rc, _, stderr := p.erasectl(t, "request", "acc-cert", "--reason", "DSR 9001"); rc != 0 {
		t.Fatalf("request: exit %d %s", rc, stderr)
	}
	job := p.waitJob(t, "acc-cert", 30*time.Second)
	if job.Status != apiv1.JobCompleted {
		t.Fatalf("job %s", job.Status)
	}

	// The auditor fetches the public key once.
	code, body := p.call(t, "GET", "/v1/certificate-key", nil)
	if code != http.StatusOK {
		t.Fatalf("certificate key: %d %s", code, body)
	}
	var key apiv1.CertificateKey
	if err := json.Unmarshal(body, &key); err != nil {
		t.Fatal(err)
	}
	onDisk, err := certificate.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := certificate.KeyID(onDisk.Public().(ed25519.PublicKey)); key.KeyID != want {
		t.Fatalf("published key %s, signing key %s", key.KeyID, want)
	}
	dir := t.TempDir()
	pubFile, certFile := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "cert.json")
	if err := os.WriteFile(pubFile, []byte(key.PublicKey), 0o644); err != nil {
		t.Fatal(err)
	}

	rc, out, stderr := p.erasectl(t, "certificate", job.ID, "--out", certFile)
	if rc != 0 {
		t.Fatalf("certificate: exit %d %s", rc, stderr)
	}
	if !strings.Contains(out, job.ID) || !strings.Contains(out, "DSR 9001") {
		t.Errorf("certificate summary:\n%s", out)
	}

	// Offline: erasectl pointed at nothing.
	verify := func(file string) (int, string, string) {
		var so, se bytes.Buffer
		env := map[string]string{cli.EnvAPIURL: "http://127.0.0.1:1", cli.EnvNATSURL: "nats://127.0.0.1:1"}
		rc := cli.Main(t.Context(), []string{"certificate", "verify", file, "--public-key", pubFile}, func(k string) string { return env[k] }, &so, &se)
		return rc, so.String(), se.String()
	}
	rc, out, stderr = verify(certFile)
	if rc != 0 {
		t.Fatalf("verify: exit %d %s", rc, stderr)
	}
	for _, want := range []string{"valid (ed25519, key " + key.KeyID + ")", "acc-cert", privacyPrincipal, "completed", "contacts",
		strconv.FormatInt(before, 10)} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}

	raw, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte(`"account_id": "acc-cert"`))
	if i < 0 {
		t.Fatalf("no account id in the file:\n%s", raw)
	}
	raw[i+len(`"account_id": "acc-cer`)] ^= 0x01 // acc-cert → acc-ceru
	tampered := filepath.Join(dir, "tampered.json")
	if err := os.WriteFile(tampered, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if rc, _, stderr := verify(tampered); rc != cli.ExitBadCertificate || !strings.Contains(stderr, "INVALID") {
		t.Fatalf("tampered: exit %d, want %d; %s", rc, cli.ExitBadCertificate, stderr)
	}

	if rc, _, _ := p.erasectl(t, "certificate", "0190a3b4-0000-7000-8000-0000000000ff"); rc != cli.ExitNotFound {
		t.Errorf("unknown job: exit %d, want %d", rc, cli.ExitNotFound)
	}
}
