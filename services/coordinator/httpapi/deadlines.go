package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// Deadlines finds running jobs near or past their legal deadline.
type Deadlines interface {
	Deadlines(ctx context.Context, within time.Duration, overdueOnly bool, limit int) ([]*jobs.Job, error)
}

// deadlineList serves GET /v1/erasures?due_within=72h and ?overdue=true:
// running jobs, earliest deadline first.
func (s *server) deadlineList(w http.ResponseWriter, r *http.Request) {
	if s.opts.Deadlines == nil {
		writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "deadline queries are not enabled on this coordinator")
		return
	}
	q := r.URL.Query()
	for k := range q {
		if k != "due_within" && k != "overdue" && k != "page_size" {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "due_within and overdue combine with page_size only")
			return
		}
	}
	var within time.Duration
	overdue := false
	switch {
	case q.Has("due_within") && q.Has("overdue"):
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "give due_within or overdue=true, not both")
		return
	case q.Has("overdue"):
		if q.Get("overdue") != "true" {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "overdue takes the value true")
			return
		}
		overdue = true
	default:
		d, err := time.ParseDuration(q.Get("due_within"))
		if err != nil || d <= 0 || d > 366*24*time.Hour {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "due_within must be a positive duration such as 72h")
			return
		}
		within = d
	}
	limit := MaxPageSize
	if ps := q.Get("page_size"); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "page_size must be a number from 1 to 500")
			return
		}
		limit = n
	}
	list, err := s.opts.Deadlines.Deadlines(r.Context(), within, overdue, limit)
	if err != nil {
		s.serviceError(w, "list jobs by deadline", err)
		return
	}
	out := apiv1.JobList{Jobs: make([]apiv1.Job, 0, len(list))}
	for _, j := range list {
		out.Jobs = append(out.Jobs, jobView(j))
	}
	writeJSON(w, http.StatusOK, out)
}
