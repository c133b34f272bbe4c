package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/rebuild"
)

// RebuildFunc rebuilds the Redis state from the lifecycle stream. It
// returns an error wrapping jobstore.ErrLocked when a rebuild is already
// running, on this coordinator or another.
type RebuildFunc func(ctx context.Context) (rebuild.Summary, error)

// MaxRebuildTime bounds how long POST /v1/admin/rebuild may take to
// answer; the server's usual write timeout is far shorter.
const MaxRebuildTime = 2 * time.Hour

func (s *server) adminRoutes(mux *http.ServeMux) {
	if s.opts.Rebuild == nil {
		return
	}
	s.route(mux, "POST /v1/admin/rebuild", s.rebuild)
}

// rebuild runs a rebuild and answers with its summary once it is done. It
// goes on when the client goes away (its summary is logged then), so that
// a dropped connection never leaves half a rebuild behind.
func (s *server) rebuild(w http.ResponseWriter, r *http.Request) {
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(MaxRebuildTime)); err != nil {
		s.log.Warn("cannot extend the write deadline for a rebuild", zap.Error(err))
	}
	sum, err := s.opts.Rebuild(context.WithoutCancel(r.Context()))
	switch {
	case errors.Is(err, jobstore.ErrLocked):
		writeError(w, http.StatusConflict, apiv1.CodeConflict, "a rebuild is already running on this or another coordinator; wait for it to finish")
	case err != nil:
		s.serviceError(w, "rebuild", err)
	default:
		writeJSON(w, http.StatusOK, rebuildView(sum))
	}
}

func rebuildView(s rebuild.Summary) apiv1.RebuildSummary {
	out := apiv1.RebuildSummary{
		Events: s.Events, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq,
		Applied: s.Applied, Checked: s.Checked, Duplicates: s.Duplicates, Ignored: s.Ignored, Skipped: s.Skipped,
		Undecodable: s.Undecodable, Unapplied: s.Unapplied, Mismatches: s.Mismatches,
		Jobs: s.Jobs, ByStatus: map[string]int{}, Written: s.Written, KeptNewer: s.KeptNewer,
		ReadSeconds: s.ReadDuration.Seconds(), DurationSeconds: s.Duration.Seconds(),
	}
	for st, n := range s.ByStatus {
		out.ByStatus[string(st)] = n
	}
	for _, p := range s.Problems {
		out.Problems = append(out.Problems, apiv1.RebuildProblem{JobID: p.JobID, Seq: p.Seq, Kind: p.Kind, Detail: p.Detail})
	}
	return out
}

// Unwrap lets http.ResponseController reach the connection behind the
// recorder (to extend a rebuild's write deadline).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
