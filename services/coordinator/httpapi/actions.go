package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// ActionTaker applies privacy actions to jobs (app.Service.Act).
type ActionTaker interface {
	Act(ctx context.Context, id string, req jobs.ActionRequest) (*jobs.Job, error)
}

func (s *server) actionRoutes(mux *http.ServeMux) {
	if s.opts.Actions == nil {
		return
	}
	for _, kind := range []jobs.ActionKind{jobs.ActionCancel, jobs.ActionForce, jobs.ActionHold, jobs.ActionRelease, jobs.ActionExtend} {
		s.route(mux, "POST /v1/erasures/{id}/"+string(kind), func(w http.ResponseWriter, r *http.Request) { s.act(w, r, kind) })
	}
}

// act answers 200 with the job after the action, 400 for a bad request,
// 404 for an unknown job, and 409 with the job's current status when the
// status does not allow the action.
func (s *server) act(w http.ResponseWriter, r *http.Request, kind jobs.ActionKind) {
	id, ok := pathJobID(w, r)
	if !ok {
		return
	}
	var body apiv1.ActionRequest
	if err := decodeStrict(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
		return
	}
	who, ok := actor(w, r, body.RequestedBy)
	if !ok {
		return
	}
	if p := caller(r); p.Role == apiauth.RoleDashboard {
		// A dashboard principal acts on the customers' own deletions only.
		cur, err := s.svc.Get(r.Context(), id)
		if err != nil {
			s.serviceError(w, string(kind)+" job", err)
			return
		}
		if !visible(p, cur) {
			errHidden(w)
			return
		}
	}
	j, err := s.opts.Actions.Act(r.Context(), id, jobs.ActionRequest{
		Kind: kind, Actor: who, Reason: body.Reason, Ticket: body.Ticket, Months: body.Months,
	})
	if st, ok := jobs.CurrentStatus(err); ok {
		writeJSON(w, http.StatusConflict, apiv1.ErrorBody{Error: apiv1.ErrorDetail{
			Code: apiv1.CodeConflict, Message: err.Error(), Status: string(st),
		}})
		return
	}
	if errors.Is(err, jobs.ErrConflict) {
		writeError(w, http.StatusConflict, apiv1.CodeConflict, err.Error())
		return
	}
	if err != nil {
		s.serviceError(w, string(kind)+" job", err)
		return
	}
	writeJSON(w, http.StatusOK, jobView(j))
}
