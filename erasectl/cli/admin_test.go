package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

func rebuildServer(t *testing.T, code int, body any, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/admin/rebuild" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(apiv1.ErrorBody{Error: apiv1.ErrorDetail{Code: apiv1.CodeNotFound, Message: "no such endpoint"}})
			return
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAdminRebuild(t *testing.T) {
	sum := apiv1.RebuildSummary{Events: 526, FirstSeq: 1, LastSeq: 526, Applied: 480, Checked: 40, Duplicates: 6,
		Skipped: map[string]uint64{"EVENT_TYPE_TASK_DEAD_LETTERED": 2}, Jobs: 64, ByStatus: map[string]int{"running": 24, "completed": 24, "failed": 16},
		Written: 63, KeptNewer: 1, ReadSeconds: 0.3, DurationSeconds: 0.5}
	withProblem := sum
	withProblem.Unapplied = 1
	withProblem.Problems = []apiv1.RebuildProblem{{JobID: "0190a3b4-0000-7000-8000-000000000001", Seq: 77, Kind: "no_job_created", Detail: "1 events of a job without a JOB_CREATED event"}}
	conflict := apiv1.ErrorBody{Error: apiv1.ErrorDetail{Code: apiv1.CodeConflict, Message: "a rebuild is already running on this or another coordinator; wait for it to finish"}}
	tests := []struct {
		name       string
		code       int
		body       any
		delay      time.Duration
		args       []string
		wantCode   int
		wantOut    []string
		wantStderr string
	}{
		{"table", 200, sum, 0, nil, ExitOK, []string{
			"events read:         526 (stream sequences 1 to 526)",
			"jobs rebuilt:        64 (running 24, completed 24, failed 16)",
			"jobs written:        63 (kept as they were, changed meanwhile: 1)",
			"skipped:             TASK_DEAD_LETTERED 2",
			"took:                0.5s (reading 0.3s; 1052 events/s)",
		}, "rebuilding"},
		{"json", 200, sum, 0, []string{"-o", "json"}, ExitOK, []string{`"events": 526`, `"kept_newer": 1`}, ""},
		{"problems", 200, withProblem, 0, nil, ExitOK, []string{"JOB", "0190a3b4-0000-7000-8000-000000000001  77   no_job_created"}, "warning: 1 events or jobs"},
		{"already running", 409, conflict, 0, nil, ExitConflict, nil, "already running"},
		{"coordinator cannot reach redis", 503, apiv1.ErrorBody{Error: apiv1.ErrorDetail{Code: apiv1.CodeUnavailable, Message: "x"}}, 0, nil, ExitUnavailable, nil, "cannot serve"},
		{"timeout", 200, sum, 2 * time.Second, []string{"--timeout", "100ms"}, ExitTimeout, nil, "the rebuild goes on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := rebuildServer(t, tt.code, tt.body, tt.delay)
			r := runCLI(t, map[string]string{EnvAPIURL: srv.URL}, append([]string{"admin", "rebuild"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", r.code, tt.wantCode, r.stderr)
			}
			for _, w := range tt.wantOut {
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

func TestAdminUsage(t *testing.T) {
	for _, args := range [][]string{{"admin"}, {"admin", "restore"}, {"admin", "rebuild", "extra"}, {"admin", "rebuild", "--timeout", "0s"}} {
		if r := runCLI(t, nil, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, r.code, ExitUsage, r.stderr)
		}
	}
	r := runCLI(t, nil, "help", "admin")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Usage: erasectl admin rebuild") || !strings.Contains(r.stdout, "--timeout duration") {
		t.Errorf("help admin: %d\n%s", r.code, r.stdout)
	}
}
