// Package app holds the coordinator's use cases — request an erasure, apply
// a worker's report, read jobs — and Run, which wires the coordinator's
// parts together. The HTTP API and the dashboard-event consumer both call
// the same Service, so both ingresses behave the same.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
	"github.com/lethe-privacy/lethe/services/coordinator/policy"
)

// Recorder appends lifecycle events.
type Recorder interface {
	Record(ctx context.Context, ev *erasurev1.LifecycleEvent) error
}

// Service implements the coordinator's use cases.
type Service struct {
	store   *jobstore.Store
	rec     Recorder
	plan    []jobs.TaskSpec
	policy  *policy.Policy
	now     func() time.Time
	wake    func()
	metrics *serviceMetrics
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) ServiceOption { return func(s *Service) { s.now = now } }

// WithPolicy plans every job from the retention policy p (its stages,
// grace periods and version) instead of the fixed plan.
func WithPolicy(p *policy.Policy) ServiceOption { return func(s *Service) { s.policy = p } }

// WithWake sets the function called after a job was created, to wake the
// dispatcher.
func WithWake(f func()) ServiceOption { return func(s *Service) { s.wake = f } }

// NewService returns the use cases over store and rec. plan lists the tasks
// every job gets; reg may be nil.
func NewService(store *jobstore.Store, rec Recorder, plan []jobs.TaskSpec, reg prometheus.Registerer, opts ...ServiceOption) *Service {
	s := &Service{store: store, rec: rec, plan: plan, now: time.Now, wake: func() {}, metrics: newServiceMetrics(reg)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// RequestErasure creates the erasure job of req.AccountID, or returns the
// account's active job (created false). Once it returns without error the
// job is stored and its creation is in the audit trail, so it will finish
// or visibly fail. Errors wrap jobs.ErrInvalid for bad requests; any other
// error means the caller should retry.
func (s *Service) RequestErasure(ctx context.Context, req jobs.Request) (*jobs.Job, bool, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, fmt.Errorf("generate job id: %w", err)
	}
	now := s.now()
	plan, err := s.planFor(req.Origin, now)
	if err != nil {
		return nil, false, err
	}
	j, err := jobs.NewPlanned(id.String(), req, plan, now)
	if err != nil {
		return nil, false, err
	}
	stored, created, err := s.store.Create(ctx, j)
	if err != nil {
		return nil, false, err
	}
	if created {
		// Woken before the event is recorded: the audit chain is serial
		// (docs/decisions.md, 38) and need not delay the first dispatch.
		s.wake()
	}
	// Recorded on every request for the job and deduplicated by event id,
	// so a crash between Create and Record is repaired by the retry.
	if err := s.rec.Record(ctx, lifecycle.Created(stored)); err != nil {
		return nil, false, err
	}
	if created {
		s.metrics.created.WithLabelValues(string(req.Origin)).Inc()
	}
	return stored, created, nil
}

// ApplyReport applies a worker's report to its job and records the
// outcome in the audit trail. A duplicate or stale report changes nothing.
// Errors wrap jobs.ErrNotFound (no such job: perhaps not rebuilt yet) or
// jobs.ErrUnknownTask (the job has no such task); anything else is
// transient.
func (s *Service) ApplyReport(ctx context.Context, rep *erasurev1.TaskReport) (jobs.Effect, error) {
	r := jobs.Report{
		Task:       jobs.TaskKey{Category: rep.GetCategory(), Stage: rep.GetStage()},
		Generation: rep.GetGeneration(),
		Succeeded:  rep.GetOutcome() == erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED,
		Items:      rep.GetItemsPurged(),
		ErrorCode:  rep.GetErrorCode(),
		Error:      rep.GetErrorMessage(),
		Attempt:    rep.GetAttempt(),
		At:         s.now(),
	}
	for k, v := range rep.GetAnchors() {
		if err := v.CheckValid(); err == nil {
			if r.Anchors == nil {
				r.Anchors = map[string]time.Time{}
			}
			r.Anchors[k] = v.AsTime()
		}
	}
	switch rep.GetOutcome() {
	case erasurev1.TaskOutcome_TASK_OUTCOME_UNSPECIFIED:
		return jobs.Effect{}, fmt.Errorf("%w: report without outcome", jobs.ErrUnknownTask)
	case erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING:
		return s.recordRetry(ctx, rep, r)
	}
	var eff jobs.Effect
	j, err := s.store.Update(ctx, rep.GetJobId(), func(j *jobs.Job) error {
		var err error
		eff, err = j.ApplyReport(r)
		if err != nil {
			return err
		}
		if eff.Result != jobs.ReportApplied {
			return jobstore.ErrNoChange
		}
		return nil
	})
	if err != nil {
		return jobs.Effect{}, err
	}
	s.metrics.reports.WithLabelValues(r.Task.Category, string(eff.Result)).Inc()
	if eff.Result == jobs.ReportStale {
		return eff, nil
	}
	if len(eff.Released) > 0 {
		// Before the events below: released tasks need not wait for the
		// serial audit chain.
		s.wake()
	}
	t, err := j.Task(r.Task)
	if err != nil {
		return eff, err
	}
	// Re-recorded for duplicates too: if an earlier attempt applied the
	// report but crashed before recording, this repairs the trail.
	if t.Status.Terminal() {
		if err := s.rec.Record(ctx, lifecycle.TaskFinished(j, t, rep.GetWorkerId())); err != nil {
			return eff, err
		}
	}
	for _, k := range eff.Released {
		if t, err := j.Task(k); err == nil && t.Calendar != nil {
			if err := s.rec.Record(ctx, lifecycle.Scheduled(j, t, r.At)); err != nil {
				return eff, err
			}
		}
	}
	if eff.Erased {
		if err := s.rec.Record(ctx, lifecycle.Erased(j)); err != nil {
			return eff, err
		}
	}
	if j.Status.Terminal() {
		if err := s.rec.Record(ctx, lifecycle.Finished(j)); err != nil {
			return eff, err
		}
		if eff.Finished {
			s.metrics.finished.WithLabelValues(string(j.Status)).Inc()
		}
	}
	return eff, nil
}

// Replay schedules the selected tasks of job id again (see
// jobs.Job.Replay), records who asked and why, and wakes the dispatcher.
// Errors wrap jobs.ErrNotFound, jobs.ErrInvalid (bad actor or reason) or
// jobs.ErrConflict (nothing to replay, a task under way, or the account
// has another active job).
func (s *Service) Replay(ctx context.Context, id string, sel jobs.ReplaySelector, actor, reason string) (*jobs.Job, []jobs.TaskKey, error) {
	if err := jobs.ValidatePrincipal(actor); err != nil {
		return nil, nil, err
	}
	if reason == "" || len(reason) > jobs.MaxReasonLen {
		return nil, nil, fmt.Errorf("%w: a replay needs a reason of at most %d bytes", jobs.ErrInvalid, jobs.MaxReasonLen)
	}
	now := s.now()
	var keys []jobs.TaskKey
	j, err := s.store.Update(ctx, id, func(j *jobs.Job) error {
		var err error
		keys, err = j.Replay(sel, actor, reason, now)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	for _, k := range keys {
		t, err := j.Task(k)
		if err != nil {
			return nil, nil, err
		}
		if err := s.rec.Record(ctx, lifecycle.Replayed(j, t, actor, reason, now)); err != nil {
			return nil, nil, err
		}
		s.metrics.replays.WithLabelValues(k.Category).Inc()
	}
	s.wake()
	return j, keys, nil
}

func (s *Service) recordRetry(ctx context.Context, rep *erasurev1.TaskReport, r jobs.Report) (jobs.Effect, error) {
	var a jobs.Attempt
	var recorded bool
	j, err := s.store.Update(ctx, rep.GetJobId(), func(j *jobs.Job) error {
		var err error
		a, recorded, err = j.RecordRetry(r)
		if err != nil {
			return err
		}
		if !recorded {
			return jobstore.ErrNoChange
		}
		return nil
	})
	if err != nil {
		return jobs.Effect{}, err
	}
	s.metrics.reports.WithLabelValues(r.Task.Category, "retrying").Inc()
	if a.Attempt == 0 {
		return jobs.Effect{Result: jobs.ReportDuplicate}, nil
	}
	t, err := j.Task(r.Task)
	if err != nil {
		return jobs.Effect{}, err
	}
	if err := s.rec.Record(ctx, lifecycle.Retrying(j, t, a, rep.GetWorkerId())); err != nil {
		return jobs.Effect{}, err
	}
	if recorded {
		return jobs.Effect{Result: jobs.ReportApplied}, nil
	}
	return jobs.Effect{Result: jobs.ReportDuplicate}, nil
}

// planFor is the plan of a job requested by origin at now: from the
// retention policy when there is one, else the fixed plan.
func (s *Service) planFor(origin jobs.Origin, now time.Time) (jobs.Plan, error) {
	if s.policy == nil {
		return jobs.Plan{Tasks: s.plan}, nil
	}
	return PlanFromPolicy(s.policy, origin, now)
}

// PlanFromPolicy turns the policy's stages for origin into a job plan.
func PlanFromPolicy(p *policy.Policy, origin jobs.Origin, now time.Time) (jobs.Plan, error) {
	stages, err := p.Plan(string(origin), now)
	if err != nil {
		return jobs.Plan{}, fmt.Errorf("%w: %w", jobs.ErrInvalid, err)
	}
	grace, _ := p.GraceFor(string(origin))
	out := jobs.Plan{Grace: grace, PolicyVersion: p.Version, PolicyFingerprint: p.Fingerprint()}
	now = now.UTC()
	for _, st := range stages {
		spec := jobs.TaskSpec{Category: st.Category, Stage: st.Stage, Action: st.Action, LegalBasis: st.LegalBasis}
		if st.Calendar != nil {
			spec.Calendar = &jobs.Calendar{Anchor: st.Calendar.EndOfYearOf, PlusYears: st.Calendar.PlusYears, Zone: st.Calendar.Zone}
			spec.After = st.NotBefore.Sub(now)
			spec.Retention = true
		} else {
			spec.After = st.Due.Sub(now)
			spec.Retention = st.Due.After(st.NotBefore)
		}
		for _, d := range st.DependsOn {
			spec.DependsOn = append(spec.DependsOn, jobs.TaskKey{Category: d.Category, Stage: d.Stage})
		}
		out.Tasks = append(out.Tasks, spec)
	}
	return out, nil
}

// Act applies a privacy action (cancel, force, hold, release, extend) to
// job id, records it with its actor, reason and ticket in the audit trail,
// and wakes the dispatcher when stages may now be due. Errors wrap
// jobs.ErrNotFound, jobs.ErrInvalid, or jobs.ErrConflict as a
// *jobs.StateError naming the job's current status.
func (s *Service) Act(ctx context.Context, id string, req jobs.ActionRequest) (*jobs.Job, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var a jobs.Action
	j, err := s.store.Update(ctx, id, func(j *jobs.Job) error {
		var err error
		a, err = j.Act(req, s.now())
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.rec.Record(ctx, lifecycle.Acted(j, a, len(j.Actions))); err != nil {
		return j, err
	}
	if req.Kind == jobs.ActionRelease && j.ErasedAt != nil && j.Status == jobs.StatusErased {
		if err := s.rec.Record(ctx, lifecycle.Erased(j)); err != nil {
			return j, err
		}
	}
	if req.Kind == jobs.ActionRelease && j.Status.Terminal() {
		if err := s.rec.Record(ctx, lifecycle.Finished(j)); err != nil {
			return j, err
		}
	}
	s.metrics.actions.WithLabelValues(string(req.Kind)).Inc()
	if req.Kind == jobs.ActionForce || req.Kind == jobs.ActionRelease {
		s.wake()
	}
	return j, nil
}

// Get returns a job; the error wraps jobs.ErrNotFound for an unknown id.
func (s *Service) Get(ctx context.Context, id string) (*jobs.Job, error) {
	return s.store.Get(ctx, id)
}

// List returns a page of jobs.
func (s *Service) List(ctx context.Context, f jobstore.Filter) ([]*jobs.Job, string, error) {
	return s.store.List(ctx, f)
}

// IsPermanent reports whether a use-case error cannot be fixed by retrying.
func IsPermanent(err error) bool {
	return errors.Is(err, jobs.ErrInvalid) || errors.Is(err, jobs.ErrUnknownTask)
}

type serviceMetrics struct {
	created  *prometheus.CounterVec
	finished *prometheus.CounterVec
	reports  *prometheus.CounterVec
	replays  *prometheus.CounterVec
	actions  *prometheus.CounterVec
}

func newServiceMetrics(reg prometheus.Registerer) *serviceMetrics {
	m := &serviceMetrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_jobs_created_total", Help: "Erasure jobs created, by origin (dashboard, api).",
		}, []string{"origin"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_jobs_finished_total", Help: "Erasure jobs that ended, by status (completed, failed).",
		}, []string{"status"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_reports_total", Help: "Worker reports handled, by category and result (applied, duplicate, stale).",
		}, []string{"category", "result"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_tasks_replayed_total", Help: "Tasks scheduled again by a replay, by category.",
		}, []string{"category"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_job_actions_total", Help: "Privacy actions applied to jobs, by action (cancel, force, hold, release, extend).",
		}, []string{"action"}),
	}
	if reg != nil {
		reg.MustRegister(m.created, m.finished, m.reports, m.replays, m.actions)
	}
	return m
}
