package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

// recordingService builds jobs with the real domain rules and remembers
// the last request, so the handler is tested without a store; the
// end-to-end tests in e2e/ cover it over Redis and NATS.
type recordingService struct{ last *jobs.Request }

func (s *recordingService) RequestErasure(_ context.Context, req jobs.Request) (*jobs.Job, bool, error) {
	s.last = &req
	j, err := jobs.New("0190a3b4-0000-7000-8000-000000000001", req, []jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}}, time.Now())
	return j, err == nil, err
}
func (s *recordingService) Get(context.Context, string) (*jobs.Job, error) {
	return nil, jobs.ErrNotFound
}
func (s *recordingService) Replay(context.Context, string, jobs.ReplaySelector, string, string) (*jobs.Job, []jobs.TaskKey, error) {
	return nil, nil, jobs.ErrNotFound
}
func (s *recordingService) List(context.Context, jobstore.Filter) ([]*jobs.Job, string, error) {
	return nil, "", nil
}

// FuzzCreateBody throws arbitrary bodies at POST /v1/erasures: the handler
// must answer 202, 400 or (requested_by naming someone else) 403 with a
// JSON body, never panic or 5xx, and only valid requests of the caller may
// reach the service.
func FuzzCreateBody(f *testing.F) {
	f.Add([]byte(`{"account_id":"acc-1","requested_by":"privacy:test","reason":"r"}`))
	f.Add([]byte(`{"account_id":"acc-1","requested_by":"privacy:x","reason":"r"}`))
	f.Add([]byte(`{"account_id":"acc-1","reason":"r"}`))
	f.Add([]byte(`{"account_id":"acc-1","requested_by":"privacy:x","reason":"r"} {}`))
	f.Add([]byte(`{"account_id":7}`))
	f.Add([]byte(`{"account_id":"a@b","requested_by":"p","reason":"r","x":1}`))
	f.Add([]byte(``))
	f.Add(bytes.Repeat([]byte(`[`), 10000))
	f.Fuzz(func(t *testing.T, body []byte) {
		svc := &recordingService{}
		h := testHandler(t, svc, Options{}, apiauth.RolePrivacy)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/erasures", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted:
			if svc.last == nil || svc.last.Validate() != nil || svc.last.RequestedBy != testPrincipal(apiauth.RolePrivacy) {
				t.Fatalf("202 for a request that is not valid: %+v", svc.last)
			}
		case http.StatusForbidden:
			var e apiv1.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != apiv1.CodePermissionDenied || svc.last != nil {
				t.Fatalf("403 without a JSON error body, or after reaching the service: %s", rec.Body)
			}
		case http.StatusBadRequest:
			var e apiv1.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != apiv1.CodeInvalidArgument || e.Error.Message == "" {
				t.Fatalf("400 without a JSON error body: %s", rec.Body)
			}
		default:
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
	})
}

func TestCreateRejectsNonJSONContentType(t *testing.T) {
	h := testHandler(t, &recordingService{}, Options{}, apiauth.RolePrivacy)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/erasures", bytes.NewReader([]byte(`{}`)))
	req.Header.Set("Content-Type", "text/plain")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("text/plain body: %d, want 400", rec.Code)
	}
}
