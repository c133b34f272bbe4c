package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// TestAuditVerifyEndpoint records a signed trail in an embedded NATS and
// asks the real walker through the handler: whole, in pages, as progress
// lines, and with the wrong key.
func TestAuditVerifyEndpoint(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	if err := topology.Ensure(t.Context(), js, topology.Settings{Categories: []string{"contacts"}}); err != nil {
		t.Fatal(err)
	}
	ring := newRing(t)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(ring.Signing()))
	for i := range 20 {
		ev := &erasurev1.LifecycleEvent{EventId: fmt.Sprintf("job-a:%d", i), JobId: "job-a", Type: erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED}
		if err := rec.Record(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	h := testHandler(t, &recordingService{}, Options{Audit: audit.NewWalker(js, ring, "")}, apiauth.RoleAuditor)
	api := httptest.NewServer(h)
	defer api.Close()
	get := func(path string, accept string) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, api.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), []byte(b.String())
	}
	report := func(body []byte) apiv1.AuditReport {
		t.Helper()
		var r apiv1.AuditReport
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		return r
	}

	code, _, body := get("/v1/audit/verify", "")
	r := report(body)
	if code != http.StatusOK || !r.OK || !r.Complete || r.Checked != 20 || r.Verified != 20 || r.Stream != erasurev1.LifecycleStream ||
		r.Head == nil || r.Head.Seq != 20 || len(r.Keys) != 1 || r.Keys[0].ID != ring.Signing().ID() {
		t.Fatalf("whole trail: %d %s", code, body)
	}

	_, _, body = get("/v1/audit/verify?limit=5", "")
	if r = report(body); r.Complete || r.NextSeq != 6 || r.Checked != 5 {
		t.Fatalf("first page: %s", body)
	}
	_, _, body = get("/v1/audit/verify?from_seq=6", "")
	if r = report(body); !r.OK || !r.Complete || r.Checked != 15 || r.FirstSeq != 6 {
		t.Fatalf("second page: %s", body)
	}

	code, ct, body := get("/v1/audit/verify", "application/x-ndjson, application/json;q=0.5")
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if code != http.StatusOK || ct != apiv1.MediaTypeNDJSON || len(lines) < 2 {
		t.Fatalf("ndjson: %d %s %s", code, ct, body)
	}
	var progress, last apiv1.AuditLine
	if err := json.Unmarshal([]byte(lines[0]), &progress); err != nil || progress.Progress == nil || progress.Progress.LastSeq != 20 {
		t.Fatalf("first line %s: %v", lines[0], err)
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Report == nil || !last.Report.OK || last.Report.Checked != 20 {
		t.Fatalf("last line %s: %v", lines[len(lines)-1], err)
	}

	for _, q := range []string{"from_seq=-1", "limit=x", "seq=3"} {
		if code, _, body := get("/v1/audit/verify?"+q, ""); code != http.StatusBadRequest || !strings.Contains(string(body), apiv1.CodeInvalidArgument) {
			t.Errorf("?%s: %d %s", q, code, body)
		}
	}

	wrong := httptest.NewServer(testHandler(t, &recordingService{}, Options{Audit: audit.NewWalker(js, newRing(t), "")}, apiauth.RoleAuditor))
	defer wrong.Close()
	resp, err := http.Get(wrong.URL + "/v1/audit/verify")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || r.OK || len(r.Problems) != 1 || r.Problems[0].Kind != apiv1.AuditKeyChanged || r.Problems[0].Seq != 1 || r.Problems[0].Message == "" {
		t.Fatalf("wrong key: %d %+v", resp.StatusCode, r)
	}
}

// blockingVerifier holds a walk until released, to see a second one refused.
type blockingVerifier struct {
	started, release chan struct{}
}

func (b blockingVerifier) Verify(ctx context.Context, _, _ uint64, _ func(audit.Progress)) (audit.Report, error) {
	close(b.started)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return audit.Report{OK: true, Complete: true}, nil
}

func TestAuditVerifyOneAtATime(t *testing.T) {
	bv := blockingVerifier{started: make(chan struct{}), release: make(chan struct{})}
	api := httptest.NewServer(testHandler(t, &recordingService{}, Options{Audit: bv}, apiauth.RoleAuditor))
	defer api.Close()
	first := make(chan int, 1)
	go func() {
		resp, err := http.Get(api.URL + "/v1/audit/verify")
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-bv.started
	resp, err := http.Get(api.URL + "/v1/audit/verify")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	close(bv.release)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("second walk: %d, want 409", resp.StatusCode)
	}
	if code := <-first; code != http.StatusOK {
		t.Errorf("first walk: %d, want 200", code)
	}

	none := httptest.NewServer(testHandler(t, &recordingService{}, Options{}, apiauth.RoleAuditor))
	defer none.Close()
	resp, err = http.Get(none.URL + "/v1/audit/verify")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without a verifier: %d, want 404", resp.StatusCode)
	}
}

func newRing(t *testing.T) *audit.KeyRing {
	t.Helper()
	k, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.NewKeyRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
