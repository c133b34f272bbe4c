package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// BulkReplayer replays failed jobs in bulk.
type BulkReplayer interface {
	ReplayFailed(ctx context.Context, b jobs.BulkReplay) ([]jobs.BulkMatch, error)
}

func (s *server) bulkRoutes(mux *http.ServeMux) {
	if s.opts.Bulk == nil {
		return
	}
	s.route(mux, "POST /v1/replays", s.bulkReplay)
}

func (s *server) bulkReplay(w http.ResponseWriter, r *http.Request) {
	var body apiv1.BulkReplayRequest
	if err := decodeStrict(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
		return
	}
	if body.Status != "failed" {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, `status must be "failed": only failed jobs are replayed in bulk`)
		return
	}
	who, ok := actor(w, r, body.RequestedBy)
	if !ok {
		return
	}
	b := jobs.BulkReplay{Category: body.Category, DryRun: body.DryRun, Limit: body.Limit, Actor: who, Reason: body.Reason}
	if body.Since != "" {
		d, err := time.ParseDuration(body.Since)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "since must be a positive duration such as 30m or 2h")
			return
		}
		b.Since = d
	}
	if b.Category != "" && !topology.ValidCategory(b.Category) {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "category must be lower-case letters only")
		return
	}
	if body.Limit < 0 || body.Limit > jobs.MaxBulk {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, fmt.Sprintf("limit must be from 1 to %d", jobs.MaxBulk))
		return
	}
	matches, err := s.opts.Bulk.ReplayFailed(r.Context(), b)
	if err != nil {
		s.serviceError(w, "bulk replay", err)
		return
	}
	out := apiv1.BulkReplayResponse{DryRun: b.DryRun, Matched: len(matches), Jobs: make([]apiv1.BulkReplayItem, 0, len(matches))}
	for _, m := range matches {
		item := apiv1.BulkReplayItem{JobID: m.JobID, AccountID: m.AccountID, FinishedAt: m.FinishedAt, Result: m.Result, Error: m.Error}
		for _, k := range m.Tasks {
			item.Tasks = append(item.Tasks, k.String())
		}
		switch m.Result {
		case "replayed":
			out.Replayed++
		case "conflict":
			out.Conflicts++
		}
		out.Jobs = append(out.Jobs, item)
	}
	writeJSON(w, http.StatusOK, out)
}
