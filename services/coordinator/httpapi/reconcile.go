package httpapi

import (
	"context"
	"net/http"

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
	writeJSON(w, http.StatusOK, rep)
}

// stuckJobs lists the running jobs a dry reconciliation finds stuck.
func (s *server) stuckJobs(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reconciler == nil {
		writeError(w, http.StatusNotFound, "not_found", "reconciliation is not enabled on this coordinator")
		return
	}
	rep, err := s.opts.Reconciler.Once(r.Context(), true)
	if err != nil {
		s.serviceError(w, "find stuck jobs", err)
		return
	}
	out := struct {
		Jobs  []reconcile.Stuck `json:"stuck"`
		Count int               `json:"count"`
	}{rep.Stuck, len(rep.Stuck)}
	writeJSON(w, http.StatusOK, out)
}
