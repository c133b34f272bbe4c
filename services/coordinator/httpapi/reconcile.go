package httpapi

import (
	"context"
	"net/http"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/reconcile"
)

// Reconciler checks every running job and repairs what it can.
type Reconciler interface {
	Once(ctx context.Context, dryRun bool) (reconcile.Report, error)
}

func (s *server) reconcileRoutes(mux *http.ServeMux) {
	if s.opts.Reconciler == nil {
		return
	}
	// GET proves the state without changing it; POST also repairs.
	s.route(mux, "GET /v1/reconciliation", func(w http.ResponseWriter, r *http.Request) { s.reconcile(w, r, true) })
	s.route(mux, "POST /v1/reconciliation", func(w http.ResponseWriter, r *http.Request) { s.reconcile(w, r, false) })
}

func (s *server) reconcile(w http.ResponseWriter, r *http.Request, dryRun bool) {
	rep, err := s.opts.Reconciler.Once(r.Context(), dryRun)
	if err != nil {
		s.serviceError(w, "reconcile", err)
		return
	}
	writeJSON(w, http.StatusOK, reportView(rep))
}

func reportView(r reconcile.Report) apiv1.ReconcileReport {
	return apiv1.ReconcileReport{At: r.At, DryRun: r.DryRun, JobsChecked: r.JobsChecked, Truncated: r.Truncated,
		Tasks: r.Tasks, Actions: r.Actions, Stuck: stuckView(r.Stuck)}
}

func stuckView(in []reconcile.Stuck) []apiv1.StuckTask {
	out := make([]apiv1.StuckTask, 0, len(in))
	for _, s := range in {
		out = append(out, apiv1.StuckTask{JobID: s.JobID, AccountID: s.AccountID, Task: s.Task.String(), Status: s.Status, Since: s.Since, Why: s.Why})
	}
	return out
}

// stuckJobs lists the running jobs a dry reconciliation finds stuck.
func (s *server) stuckJobs(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reconciler == nil {
		writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "reconciliation is not enabled on this coordinator")
		return
	}
	rep, err := s.opts.Reconciler.Once(r.Context(), true)
	if err != nil {
		s.serviceError(w, "find stuck jobs", err)
		return
	}
	writeJSON(w, http.StatusOK, apiv1.StuckList{Stuck: stuckView(rep.Stuck), Count: len(rep.Stuck)})
}
