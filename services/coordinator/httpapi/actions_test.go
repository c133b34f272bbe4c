package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

const actJobID = "0190a3b4-0000-7000-8000-00000000000a"

// domainActions applies actions with the real domain rules to one job in
// memory (the e2e and app tests run them over Redis and NATS).
type domainActions struct {
	mu sync.Mutex
	j  *jobs.Job
}

func newDomainActions(t testing.TB) *domainActions {
	j, err := jobs.NewPlanned(actJobID, jobs.Request{AccountID: "acc-1", Origin: jobs.OriginDashboard, RequestedBy: "dashboard:acc-1"},
		jobs.Plan{Grace: 14 * 24 * time.Hour, Tasks: []jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete", After: 14 * 24 * time.Hour}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &domainActions{j: j}
}

func (d *domainActions) Act(_ context.Context, id string, req jobs.ActionRequest) (*jobs.Job, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id != d.j.ID {
		return nil, jobs.ErrNotFound
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	cp := *d.j
	cp.Tasks = append([]jobs.Task(nil), d.j.Tasks...)
	cp.Actions = append([]jobs.Action(nil), d.j.Actions...)
	if _, err := cp.Act(req, time.Now()); err != nil {
		return nil, err
	}
	d.j = &cp
	return d.j, nil
}

func TestActionEndpoints(t *testing.T) {
	h := testHandler(t, &recordingService{}, Options{Actions: newDomainActions(t)}, apiauth.RolePrivacy)
	steps := []struct {
		name, path, body string
		code             int
		wantStatus       string // job status on 200, current status on 409
	}{
		{"bad id", "/v1/erasures/nope/hold", `{"reason":"r"}`, 400, ""},
		{"unknown job", "/v1/erasures/0190a3b4-0000-7000-8000-00000000000b/hold", `{"reason":"r"}`, 404, ""},
		{"unknown field", "/v1/erasures/" + actJobID + "/hold", `{"reason":"r","until":"x"}`, 400, ""},
		{"no reason", "/v1/erasures/" + actJobID + "/hold", `{}`, 400, ""},
		{"release what is not held", "/v1/erasures/" + actJobID + "/release", `{"reason":"r"}`, 409, "pending"},
		{"hold", "/v1/erasures/" + actJobID + "/hold", `{"reason":"tax audit","ticket":"LEGAL-1"}`, 200, "held"},
		{"hold again", "/v1/erasures/" + actJobID + "/hold", `{"reason":"r"}`, 409, "held"},
		{"cancel while held", "/v1/erasures/" + actJobID + "/cancel", `{"reason":"r"}`, 409, "held"},
		{"extend too far", "/v1/erasures/" + actJobID + "/extend", `{"reason":"r","months":3}`, 400, ""},
		{"extend", "/v1/erasures/" + actJobID + "/extend", `{"reason":"complex","months":2}`, 200, "held"},
		{"release", "/v1/erasures/" + actJobID + "/release", `{"reason":"audit closed"}`, 200, "pending"},
		{"force without ticket", "/v1/erasures/" + actJobID + "/force", `{"reason":"r"}`, 400, ""},
		{"force", "/v1/erasures/" + actJobID + "/force", `{"reason":"DSR","ticket":"PRIV-1"}`, 200, "running"},
		{"cancel after it started", "/v1/erasures/" + actJobID + "/cancel", `{"reason":"r"}`, 409, "running"},
	}
	for _, s := range steps {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, s.path, bytes.NewBufferString(s.body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code != s.code {
			t.Fatalf("%s: %d %s, want %d", s.name, rec.Code, rec.Body, s.code)
		}
		switch s.code {
		case 200:
			var j apiv1.Job
			if err := json.Unmarshal(rec.Body.Bytes(), &j); err != nil || j.Status != s.wantStatus {
				t.Fatalf("%s: job %s (%v), want %s", s.name, j.Status, err, s.wantStatus)
			}
		case 409:
			var e apiv1.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Status != s.wantStatus || e.Error.Code != apiv1.CodeConflict {
				t.Fatalf("%s: 409 body %s, want the current status %s", s.name, rec.Body, s.wantStatus)
			}
		}
	}
}

// FuzzActionBody: any body to an action endpoint answers 200, 400, 409
// or (requested_by naming someone else than the caller) 403 with JSON;
// nothing panics or reaches 5xx.
func FuzzActionBody(f *testing.F) {
	f.Add("hold", []byte(`{"reason":"r"}`))
	f.Add("extend", []byte(`{"reason":"r","months":1}`))
	f.Add("force", []byte(`{"reason":"r","ticket":"P-1"}`))
	f.Add("cancel", []byte(`{"months":"x"}`))
	f.Add("release", []byte(`[]`))
	f.Fuzz(func(t *testing.T, action string, body []byte) {
		h := testHandler(t, &recordingService{}, Options{Actions: newDomainActions(t)}, apiauth.RolePrivacy)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/erasures/"+actJobID+"/hold", bytes.NewReader(body))
		if len(action) > 0 {
			switch action[0] % 5 {
			case 1:
				req.URL.Path = "/v1/erasures/" + actJobID + "/force"
			case 2:
				req.URL.Path = "/v1/erasures/" + actJobID + "/extend"
			case 3:
				req.URL.Path = "/v1/erasures/" + actJobID + "/cancel"
			case 4:
				req.URL.Path = "/v1/erasures/" + actJobID + "/release"
			}
		}
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 409:
		case 403:
			if !bytes.Contains(rec.Body.Bytes(), []byte(`"permission_denied"`)) {
				t.Fatalf("403 without permission_denied: %s", rec.Body)
			}
		default:
			t.Fatalf("%s %q: %d %s", req.URL.Path, body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
	})
}
