package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/rebuild"
)

func TestRebuildEndpoint(t *testing.T) {
	sum := rebuild.Summary{Events: 12, FirstSeq: 1, LastSeq: 12, Applied: 10, Checked: 1, Duplicates: 1, Jobs: 2,
		ByStatus: map[jobs.Status]int{jobs.StatusCompleted: 2}, Written: 2, Skipped: map[string]uint64{"EVENT_TYPE_TASK_DEAD_LETTERED": 1},
		Problems: []rebuild.Problem{{JobID: "j1", Seq: 7, Kind: rebuild.ProblemUnresolved, Detail: "x"}}, Duration: 1500 * time.Millisecond}
	tests := []struct {
		name     string
		rebuild  RebuildFunc
		method   string
		wantCode int
		wantErr  string
	}{
		{"done", func(context.Context) (rebuild.Summary, error) { return sum, nil }, "POST", http.StatusOK, ""},
		{"already running", func(context.Context) (rebuild.Summary, error) {
			return rebuild.Summary{}, fmt.Errorf("take lock rebuild: %w", jobstore.ErrLocked)
		}, "POST", http.StatusConflict, apiv1.CodeConflict},
		{"redis down", func(context.Context) (rebuild.Summary, error) {
			return rebuild.Summary{}, errors.New("dial tcp: connection refused")
		}, "POST", http.StatusServiceUnavailable, apiv1.CodeUnavailable},
		{"not enabled", nil, "POST", http.StatusNotFound, apiv1.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotCtx context.Context
			var fn RebuildFunc
			if tt.rebuild != nil {
				fn = func(ctx context.Context) (rebuild.Summary, error) { gotCtx = ctx; return tt.rebuild(ctx) }
			}
			h := testHandler(t, &recordingService{}, Options{Rebuild: fn}, apiauth.RoleSRE)
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest(tt.method, srv.URL+"/v1/admin/rebuild", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			switch {
			case tt.wantCode == http.StatusOK:
				var got apiv1.RebuildSummary
				if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
					t.Fatal(err)
				}
				if got.Events != 12 || got.Jobs != 2 || got.ByStatus["completed"] != 2 || got.DurationSeconds != 1.5 ||
					len(got.Problems) != 1 || got.Problems[0].Kind != "out_of_order" || got.Skipped["EVENT_TYPE_TASK_DEAD_LETTERED"] != 1 {
					t.Errorf("summary = %+v", got)
				}
				if gotCtx.Done() != nil {
					t.Error("the rebuild's context ends with the request: a client going away would stop it halfway")
				}
			case tt.wantErr != "":
				var e apiv1.ErrorBody
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error.Code != tt.wantErr || e.Error.Message == "" {
					t.Errorf("error body %+v (%v), want code %s", e, err, tt.wantErr)
				}
			}
		})
	}
}
