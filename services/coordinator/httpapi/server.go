package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

// Service is what the API needs of the coordinator.
type Service interface {
	RequestErasure(ctx context.Context, req jobs.Request) (*jobs.Job, bool, error)
	Get(ctx context.Context, id string) (*jobs.Job, error)
	List(ctx context.Context, f jobstore.Filter) ([]*jobs.Job, string, error)
	Replay(ctx context.Context, id string, sel jobs.ReplaySelector, actor, reason string) (*jobs.Job, []jobs.TaskKey, error)
}

// Limits of the API.
const (
	MaxBodyBytes    = 16 << 10
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Options configure the handler.
type Options struct {
	// Ready reports whether the coordinator can serve (NATS and Redis
	// reachable).
	Ready func(ctx context.Context) error
	// Gatherer serves /metrics; nil serves no metrics.
	Gatherer prometheus.Gatherer
	// Registerer receives the API's own metrics; may be nil.
	Registerer prometheus.Registerer
	// DeadLetters serves /v1/dead-letters; nil serves none.
	DeadLetters DeadLetters
	// Bulk serves POST /v1/replays; nil serves none.
	Bulk BulkReplayer
	// Reconciler serves /v1/reconciliation and ?stuck=true; nil: none.
	Reconciler Reconciler
	// Deadlines serves ?due_within= and ?overdue=true; nil: none.
	Deadlines Deadlines
	// Rebuild serves POST /v1/admin/rebuild; nil serves none.
	Rebuild RebuildFunc
	// Certificates serves /v1/erasures/{id}/certificate and
	// /v1/certificate-key; nil serves none.
	Certificates CertificateIssuer
	// Audit serves GET /v1/audit/verify; nil serves none.
	Audit AuditVerifier
	// Actions serves POST /v1/erasures/{id}/{cancel,force,hold,release,
	// extend}; nil serves none.
	Actions ActionTaker
	// Auth finds the principal of a request's bearer token. Every route
	// but the public probes needs one; nil refuses them all (401).
	Auth Authenticator
	// RateLimit is each principal's sustained rate of requests a second
	// and RateBurst its burst; beyond them the API answers 429 with
	// Retry-After. Zero: DefaultRateLimit, DefaultRateBurst.
	RateLimit float64
	RateBurst int
}

type server struct {
	svc      Service
	log      *zap.Logger
	opts     Options
	access   map[string]access
	patterns []string // the routes registered, in order
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewHandler returns the coordinator's HTTP handler. Every request but
// the public probes' must carry a bearer token that opts.Auth knows, of a
// role the route's access rule allows (see accessRules).
func NewHandler(svc Service, log *zap.Logger, opts Options) http.Handler {
	s, mux := newServer(svc, log, opts)
	return newGuard(s, mux)
}

// newServer builds the server and its routes.
func newServer(svc Service, log *zap.Logger, opts Options) (*server, *http.ServeMux) {
	s := &server{
		svc: svc, log: log, opts: opts, access: accessRules(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lethe_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
		}, []string{"route"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.requests, s.latency)
	}
	mux := http.NewServeMux()
	s.route(mux, "POST /v1/erasures", s.create)
	s.route(mux, "GET /v1/erasures", s.list)
	s.route(mux, "GET /v1/erasures/{id}", s.get)
	s.route(mux, "POST /v1/erasures/{id}/replay", s.replay)
	s.actionRoutes(mux)
	s.deadLetterRoutes(mux)
	s.bulkRoutes(mux)
	s.reconcileRoutes(mux)
	s.adminRoutes(mux)
	s.certificateRoutes(mux)
	s.auditRoutes(mux)
	s.route(mux, "GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.route(mux, "GET /readyz", s.ready)
	if opts.Gatherer != nil {
		s.route(mux, "GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}).ServeHTTP)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "no such endpoint; see docs/api.md")
	})
	return s, mux
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// route registers h for pattern behind the pattern's access rule, and
// counts and times its requests. Every call that may change something
// (any method but GET) is logged with the principal that made it.
func (s *server) route(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	s.patterns = append(s.patterns, pattern)
	h = s.authorize(pattern, h)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h(rec, r)
		s.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
		s.latency.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
		if r.Method != http.MethodGet {
			p := caller(r)
			s.log.Info("api call", zap.String("route", pattern), zap.String("principal", p.ID), zap.String("role", string(p.Role)), zap.Int("code", rec.code))
		}
	})
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	var body apiv1.CreateErasureRequest
	if err := decodeStrict(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
		return
	}
	who, ok := actor(w, r, body.RequestedBy)
	if !ok {
		return
	}
	req := jobs.Request{
		AccountID:   body.AccountID,
		Origin:      jobs.OriginAPI,
		RequestedBy: who,
		Reason:      body.Reason,
	}
	p := caller(r)
	if p.Role == apiauth.RoleDashboard {
		// The dashboard asks for the standard erasure, with the grace
		// period in which the customer can still undo it.
		req.Origin = jobs.OriginDashboard
		if p.Account != "" && body.AccountID != p.Account {
			writeError(w, http.StatusForbidden, apiv1.CodePermissionDenied, fmt.Sprintf("this token is limited to account %s", p.Account))
			return
		}
	}
	if strings.TrimSpace(req.Reason) == "" {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "reason is required: say why this erasure is requested (no personal data)")
		return
	}
	j, created, err := s.svc.RequestErasure(r.Context(), req)
	if err != nil {
		s.serviceError(w, "request erasure", err)
		return
	}
	if !visible(p, j) {
		// The account's active job is the privacy team's: it goes on, and
		// the dashboard learns no more than that.
		writeError(w, http.StatusConflict, apiv1.CodeConflict, "this account already has an erasure under way that the privacy team requested; nothing to do")
		return
	}
	out := jobView(j)
	out.Created = &created
	w.Header().Set("Location", "/v1/erasures/"+j.ID)
	code := http.StatusAccepted
	if !created {
		code = http.StatusOK
	}
	writeJSON(w, code, out)
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathJobID(w, r)
	if !ok {
		return
	}
	j, err := s.svc.Get(r.Context(), id)
	if err != nil {
		s.serviceError(w, "get job", err)
		return
	}
	if !visible(caller(r), j) {
		errHidden(w)
		return
	}
	writeJSON(w, http.StatusOK, jobView(j))
}

func (s *server) replay(w http.ResponseWriter, r *http.Request) {
	id, ok := pathJobID(w, r)
	if !ok {
		return
	}
	var body apiv1.ReplayRequest
	if err := decodeStrict(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
		return
	}
	if body.Stage != "" && body.Category == "" {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "stage needs a category")
		return
	}
	who, ok := actor(w, r, body.RequestedBy)
	if !ok {
		return
	}
	j, keys, err := s.svc.Replay(r.Context(), id, jobs.ReplaySelector{Category: body.Category, Stage: body.Stage}, who, body.Reason)
	if errors.Is(err, jobs.ErrConflict) {
		state := ""
		if cur, gerr := s.svc.Get(r.Context(), id); gerr == nil {
			state = fmt.Sprintf(" (job is %s)", cur.Status)
		}
		writeError(w, http.StatusConflict, apiv1.CodeConflict, err.Error()+state)
		return
	}
	if err != nil {
		s.serviceError(w, "replay job", err)
		return
	}
	out := apiv1.ReplayResponse{Job: jobView(j), Replayed: make([]string, 0, len(keys))}
	for _, k := range keys {
		out.Replayed = append(out.Replayed, k.String())
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "account_id", "status", "page_size", "page_token", "stuck", "due_within", "overdue":
		default:
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, fmt.Sprintf("unknown query parameter %q; use account_id, status, page_size, page_token, stuck, due_within, overdue", k))
			return
		}
	}
	p := caller(r)
	if p.Role == apiauth.RoleDashboard {
		if !s.dashboardList(w, r, p) {
			return
		}
		q = r.URL.Query()
	}
	if q.Has("due_within") || q.Has("overdue") {
		s.deadlineList(w, r)
		return
	}
	if q.Has("stuck") {
		if q.Get("stuck") != "true" || len(q) > 1 {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "stuck=true stands alone: it lists the tasks of running jobs that do not move")
			return
		}
		s.stuckJobs(w, r)
		return
	}
	f := jobstore.Filter{AccountID: q.Get("account_id"), Status: jobs.Status(q.Get("status")), PageSize: DefaultPageSize, PageToken: q.Get("page_token")}
	if f.AccountID != "" {
		if err := jobs.ValidateAccountID(f.AccountID); err != nil {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
			return
		}
	}
	if f.Status != "" && !f.Status.Valid() {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "status must be running, completed or failed")
		return
	}
	if ps := q.Get("page_size"); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, fmt.Sprintf("page_size must be a number from 1 to %d", MaxPageSize))
			return
		}
		f.PageSize = n
	}
	list, next, err := s.svc.List(r.Context(), f)
	if err != nil {
		s.serviceError(w, "list jobs", err)
		return
	}
	out := apiv1.JobList{Jobs: make([]apiv1.Job, 0, len(list)), NextPageToken: next}
	for _, j := range list {
		if visible(p, j) {
			out.Jobs = append(out.Jobs, jobView(j))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// dashboardList checks a dashboard principal's list request: one
// account's jobs (its own account when its token names one), no queries
// across accounts (stuck, due_within, overdue). It fills in account_id
// from the token and reports whether the request may go on; list then
// leaves out the jobs the principal may not see, so a page can hold fewer
// jobs than page_size.
func (s *server) dashboardList(w http.ResponseWriter, r *http.Request, p apiauth.Principal) bool {
	q := r.URL.Query()
	if q.Has("stuck") || q.Has("due_within") || q.Has("overdue") {
		writeError(w, http.StatusForbidden, apiv1.CodePermissionDenied, "stuck, due_within and overdue list every account's jobs: not for a dashboard principal")
		return false
	}
	acct := q.Get("account_id")
	switch {
	case p.Account != "" && acct == "":
		q.Set("account_id", p.Account)
		r.URL.RawQuery = q.Encode()
	case p.Account != "" && acct != p.Account:
		writeError(w, http.StatusForbidden, apiv1.CodePermissionDenied, fmt.Sprintf("this token is limited to account %s", p.Account))
		return false
	case acct == "":
		writeError(w, http.StatusForbidden, apiv1.CodePermissionDenied, "a dashboard principal lists one account's jobs: add ?account_id=")
		return false
	}
	return true
}

func (s *server) ready(w http.ResponseWriter, r *http.Request) {
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, apiv1.CodeUnavailable, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *server) serviceError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, jobs.ErrInvalid):
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
	case errors.Is(err, jobs.ErrNotFound):
		writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "no job with this id")
	case errors.Is(err, jobstore.ErrBadPageToken):
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "page_token is not one this API returned")
	default:
		s.log.Error("api request failed", zap.String("operation", what), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, apiv1.CodeUnavailable, "the coordinator could not reach its state store or broker; retry the request (it is idempotent)")
	}
}

// decodeStrict reads one JSON object with no unknown fields and no
// trailing data.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errors.New("content type must be application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return fmt.Errorf("body larger than %d bytes", MaxBodyBytes)
		case errors.Is(err, io.EOF):
			return errors.New("empty body: send a JSON object")
		case errors.As(err, &se):
			return fmt.Errorf("malformed JSON at byte %d", se.Offset)
		case errors.As(err, &te):
			return fmt.Errorf("field %q must be a %s", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return fmt.Errorf("unknown field %s; docs/api.md lists the fields of each body", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return errors.New("malformed JSON body")
		}
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// pathJobID returns the {id} of the request's path, or answers 400 and
// false when it is not a job id.
func pathJobID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !validJobID(id) {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "job id must be a UUID as returned by POST /v1/erasures")
		return "", false
	}
	return id, true
}

func validJobID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'):
		default:
			return false
		}
	}
	return true
}

func jobView(j *jobs.Job) apiv1.Job {
	out := apiv1.Job{
		ID: j.ID, AccountID: j.AccountID, Status: string(j.Status), Origin: string(j.Origin),
		RequestedBy: j.RequestedBy, Reason: j.Reason, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		Deadline: j.Deadline, FinishedAt: j.FinishedAt, Error: j.Error, Tasks: make([]apiv1.Task, 0, len(j.Tasks)),
		PolicyVersion: j.PolicyVersion, PolicyFingerprint: j.PolicyFingerprint, GraceUntil: j.GraceUntil,
		HeldFrom: string(j.HeldFrom), OriginalDeadline: j.OriginalDeadline, ErasedAt: j.ErasedAt,
	}
	for _, a := range j.Actions {
		out.Actions = append(out.Actions, apiv1.Action{Kind: string(a.Kind), Actor: a.Actor, Reason: a.Reason, Ticket: a.Ticket,
			At: a.At, From: string(a.From), To: string(a.To), Months: a.Months})
	}
	for _, t := range j.Tasks {
		var deps []string
		for _, d := range t.DependsOn {
			deps = append(deps, d.String())
		}
		var hist []apiv1.Attempt
		for _, a := range t.History {
			hist = append(hist, apiv1.Attempt{Generation: a.Generation, Attempt: a.Attempt, At: a.At, Outcome: a.Outcome,
				ErrorCode: a.ErrorCode, Error: a.Error, Actor: a.Actor, Reason: a.Reason})
		}
		out.Tasks = append(out.Tasks, apiv1.Task{
			DependsOn: deps,
			History:   hist,
			Category:  t.Category, Stage: t.Stage, Action: t.Action, Status: string(t.Status),
			Generation: t.Generation, Attempts: t.Attempts, ItemsPurged: t.ItemsPurged,
			Error: t.Error, ErrorCode: t.ErrorCode, DispatchedAt: t.DispatchedAt, FinishedAt: t.FinishedAt,
			DueAt: t.DueAt, Retention: t.Retention, LegalBasis: t.LegalBasis,
			Calendar: calendarText(t.Calendar),
		})
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, apiv1.ErrorBody{Error: apiv1.ErrorDetail{Code: errCode, Message: msg}})
}

func calendarText(c *jobs.Calendar) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf("1 January after year(%s) + %d, %s", c.Anchor, c.PlusYears, c.Zone)
}
