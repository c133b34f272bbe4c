package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/deadletter"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// DeadLetters is what the dead-letter endpoints need.
type DeadLetters interface {
	List(ctx context.Context, category string, limit int) ([]deadletter.Letter, int, error)
	Get(ctx context.Context, seq uint64) (deadletter.Letter, error)
	Replay(ctx context.Context, seq uint64, actor, reason string) (deadletter.ReplayResult, error)
}

func (s *server) deadLetterRoutes(mux *http.ServeMux) {
	if s.opts.DeadLetters == nil {
		return
	}
	s.route(mux, "GET /v1/dead-letters", s.listDeadLetters)
	s.route(mux, "GET /v1/dead-letters/{seq}", s.getDeadLetter)
	s.route(mux, "POST /v1/dead-letters/{seq}/replay", s.replayDeadLetter)
}

func (s *server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "category" && k != "limit" {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, fmt.Sprintf("unknown query parameter %q; use category, limit", k))
			return
		}
	}
	cat := q.Get("category")
	if cat != "" && !topology.ValidCategory(cat) {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "category must be lower-case letters only")
		return
	}
	limit := DefaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "limit must be a number from 1 to 500")
			return
		}
		limit = n
	}
	list, total, err := s.opts.DeadLetters.List(r.Context(), cat, limit)
	if err != nil {
		s.serviceError(w, "list dead letters", err)
		return
	}
	out := apiv1.DeadLetterList{DeadLetters: make([]apiv1.DeadLetter, 0, len(list)), Total: total}
	for _, l := range list {
		out.DeadLetters = append(out.DeadLetters, deadLetterView(l))
	}
	writeJSON(w, http.StatusOK, out)
}

func parseSeq(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "a dead letter is named by its sequence number, as listed by GET /v1/dead-letters")
		return 0, false
	}
	return seq, true
}

func (s *server) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	seq, ok := parseSeq(w, r)
	if !ok {
		return
	}
	l, err := s.opts.DeadLetters.Get(r.Context(), seq)
	if errors.Is(err, deadletter.ErrNotFound) {
		writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "no dead letter with this sequence (replayed already?)")
		return
	}
	if err != nil {
		s.serviceError(w, "get dead letter", err)
		return
	}
	writeJSON(w, http.StatusOK, deadLetterView(l))
}

func (s *server) replayDeadLetter(w http.ResponseWriter, r *http.Request) {
	seq, ok := parseSeq(w, r)
	if !ok {
		return
	}
	var body apiv1.ReplayRequest
	if err := decodeStrict(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
		return
	}
	if body.Category != "" || body.Stage != "" {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "a dead letter names its own task: send requested_by and reason only")
		return
	}
	who, ok := actor(w, r, body.RequestedBy)
	if !ok {
		return
	}
	res, err := s.opts.DeadLetters.Replay(r.Context(), seq, who, body.Reason)
	switch {
	case errors.Is(err, deadletter.ErrNotFound):
		writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "no dead letter with this sequence (replayed already?)")
		return
	case errors.Is(err, jobs.ErrConflict):
		writeError(w, http.StatusConflict, apiv1.CodeConflict, err.Error())
		return
	case err != nil:
		s.serviceError(w, "replay dead letter", err)
		return
	}
	out := apiv1.DeadLetterReplay{DeadLetter: deadLetterView(res.Letter), Result: res.Result}
	if res.Job != nil {
		jv := jobView(res.Job)
		out.Job = &jv
	}
	writeJSON(w, http.StatusOK, out)
}

func deadLetterView(l deadletter.Letter) apiv1.DeadLetter {
	return apiv1.DeadLetter{
		Seq: l.Seq, Category: l.Category, JobID: l.JobID, AccountID: l.AccountID, Stage: l.Stage,
		Generation: l.Generation, Code: l.Code, Reason: l.Reason, Attempts: l.Attempts, Source: l.Source, StoredAt: l.StoredAt,
	}
}
