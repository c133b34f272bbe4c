// Package reconcile checks, end to end, that every accepted erasure is
// accounted for: each task of each running job is done, failed, in flight
// (its message is in the work queue), scheduled (its due entry exists) or
// waiting for another task. What does not fit is repaired: a dispatched
// task whose message is gone without a report — the broker lost it, as
// Jepsen showed JetStream can on power loss — is published again; a
// scheduled task missing from the due index is put back. Jobs that stay
// in such a state are reported as stuck.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// Broker is the part of JetStream reconciliation uses.
type Broker interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Recorder appends lifecycle events.
type Recorder interface {
	Record(ctx context.Context, ev *erasurev1.LifecycleEvent) error
}

// Options tune reconciliation.
type Options struct {
	// Interval between runs; default 1 minute.
	Interval time.Duration
	// RedispatchAfter is how long a dispatched task may go without a
	// report before its message is looked for; default 15 minutes, longer
	// than a worker's retries of one delivery normally take.
	RedispatchAfter time.Duration
	// ScheduledGrace is how long past its due time a scheduled task may
	// wait for the dispatcher before it counts as stuck; default 1 minute.
	ScheduledGrace time.Duration
	// MaxJobs bounds one run's scan of running jobs; default 100,000.
	MaxJobs int
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// Reconciler runs reconciliation.
type Reconciler struct {
	store   *jobstore.Store
	js      Broker
	rec     Recorder
	log     *zap.Logger
	opts    Options
	actions *prometheus.CounterVec
	stuck   prometheus.Gauge
	runs    *prometheus.CounterVec
}

// New returns a reconciler; reg may be nil.
func New(store *jobstore.Store, js Broker, rec Recorder, log *zap.Logger, reg prometheus.Registerer, opts Options) *Reconciler {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.RedispatchAfter <= 0 {
		opts.RedispatchAfter = 15 * time.Minute
	}
	if opts.ScheduledGrace <= 0 {
		opts.ScheduledGrace = time.Minute
	}
	if opts.MaxJobs <= 0 {
		opts.MaxJobs = 100000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reconciler{
		store: store, js: js, rec: rec, log: log, opts: opts,
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_reconcile_actions_total",
			Help: "Repairs made by reconciliation, by action (redispatched: a lost task published again; requeued: a scheduled task put back in the due index).",
		}, []string{"action"}),
		stuck: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lethe_jobs_stuck",
			Help: "Running jobs found stuck by the last reconciliation run.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_reconcile_runs_total",
			Help: "Reconciliation runs, by result (ok, error).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(r.actions, r.stuck, r.runs)
	}
	return r
}

// Task states in a report.
const (
	StateDone      = "done"
	StateFailed    = "failed"
	StateInFlight  = "in_flight"
	StateScheduled = "scheduled"
	StateWaiting   = "waiting"
)

// Stuck names a task that does not move.
type Stuck struct {
	JobID     string       `json:"job_id"`
	AccountID string       `json:"account_id"`
	Task      jobs.TaskKey `json:"task"`
	Status    string       `json:"status"`
	Since     time.Time    `json:"since"`
	Why       string       `json:"why"`
}

// Report is the outcome of one reconciliation run: every task of every
// running job is counted in exactly one state.
type Report struct {
	At          time.Time      `json:"at"`
	DryRun      bool           `json:"dry_run"`
	JobsChecked int            `json:"jobs_checked"`
	Truncated   bool           `json:"truncated"`
	Tasks       map[string]int `json:"tasks"`
	Actions     map[string]int `json:"actions"`
	Stuck       []Stuck        `json:"stuck"`
}

// Run reconciles every Interval until ctx is cancelled.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rep, err := r.Once(ctx, false)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("reconciliation run failed", zap.Error(err))
			continue
		}
		if len(rep.Actions) > 0 || len(rep.Stuck) > 0 {
			r.log.Warn("reconciliation repaired or found stuck tasks", zap.Int("jobs_checked", rep.JobsChecked),
				zap.Int("redispatched", rep.Actions["redispatched"]), zap.Int("requeued", rep.Actions["requeued"]), zap.Int("stuck", len(rep.Stuck)))
		}
	}
}

// Once checks every running job. With dryRun it repairs nothing.
func (r *Reconciler) Once(ctx context.Context, dryRun bool) (Report, error) {
	rep, err := r.once(ctx, dryRun)
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.runs.WithLabelValues(result).Inc()
	if err == nil && !dryRun {
		r.stuck.Set(float64(stuckJobs(rep.Stuck)))
	}
	return rep, err
}

func stuckJobs(s []Stuck) int {
	seen := map[string]bool{}
	for _, x := range s {
		seen[x.JobID] = true
	}
	return len(seen)
}

func (r *Reconciler) once(ctx context.Context, dryRun bool) (Report, error) {
	now := r.opts.Now().UTC()
	rep := Report{At: now, DryRun: dryRun, Tasks: map[string]int{}, Actions: map[string]int{}, Stuck: []Stuck{}}
	tasks, err := r.js.Stream(ctx, erasurev1.TasksStream)
	if err != nil {
		return rep, fmt.Errorf("look up the tasks stream: %w", err)
	}
	due, err := r.dueSet(ctx, now)
	if err != nil {
		return rep, err
	}
	// Running and erased jobs have tasks under way; pending ones have not
	// started, and held ones dispatch nothing.
	for _, st := range []jobs.Status{jobs.StatusRunning, jobs.StatusErased} {
		if done, err := r.checkStatus(ctx, st, tasks, due, now, dryRun, &rep); done || err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (r *Reconciler) checkStatus(ctx context.Context, st jobs.Status, tasks jetstream.Stream, due map[string]bool, now time.Time, dryRun bool, rep *Report) (bool, error) {
	token := ""
	for {
		page, next, err := r.store.List(ctx, jobstore.Filter{Status: st, PageSize: 500, PageToken: token})
		if err != nil {
			return true, err
		}
		for _, j := range page {
			if rep.JobsChecked >= r.opts.MaxJobs {
				rep.Truncated = true
				return true, nil
			}
			rep.JobsChecked++
			if err := r.check(ctx, j, tasks, due, now, dryRun, rep); err != nil {
				return true, err
			}
		}
		if next == "" {
			return false, nil
		}
		token = next
	}
}

// dueSet lists the due-index members that are due by now, so that a
// scheduled task can be checked for its entry.
func (r *Reconciler) dueSet(ctx context.Context, now time.Time) (map[string]bool, error) {
	entries, err := r.store.Due(ctx, now, int64(r.opts.MaxJobs)*4)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(entries))
	for _, e := range entries {
		set[e.JobID+"|"+e.Task.String()] = true
	}
	return set, nil
}

func (r *Reconciler) check(ctx context.Context, j *jobs.Job, tasks jetstream.Stream, due map[string]bool, now time.Time, dryRun bool, rep *Report) error {
	for i := range j.Tasks {
		t := &j.Tasks[i]
		switch t.Status {
		case jobs.TaskSucceeded:
			rep.Tasks[StateDone]++
		case jobs.TaskFailed:
			rep.Tasks[StateFailed]++
		case jobs.TaskWaiting:
			rep.Tasks[StateWaiting]++
		case jobs.TaskScheduled:
			rep.Tasks[StateScheduled]++
			if now.Sub(t.DueAt) <= r.opts.ScheduledGrace {
				continue
			}
			if !due[j.ID+"|"+t.Key().String()] {
				// The due entry is missing (a partial Redis loss): rewriting
				// the job puts it back.
				if !dryRun {
					if _, err := r.store.Update(ctx, j.ID, func(*jobs.Job) error { return nil }); err != nil {
						return fmt.Errorf("requeue %s of job %s: %w", t.Key(), j.ID, err)
					}
					r.actions.WithLabelValues("requeued").Inc()
				}
				rep.Actions["requeued"]++
				continue
			}
			rep.Stuck = append(rep.Stuck, Stuck{JobID: j.ID, AccountID: j.AccountID, Task: t.Key(), Status: string(t.Status), Since: t.DueAt,
				Why: "due but not dispatched: is the dispatcher running and NATS reachable?"})
		case jobs.TaskDispatched:
			rep.Tasks[StateInFlight]++
			since := j.UpdatedAt
			if t.DispatchedAt != nil {
				since = *t.DispatchedAt
			}
			if now.Sub(since) < r.opts.RedispatchAfter {
				continue
			}
			present, err := messagePresent(ctx, tasks, t.MsgSeq)
			if err != nil {
				return err
			}
			if present {
				// Queued or being retried by a worker: slow, not lost.
				rep.Stuck = append(rep.Stuck, Stuck{JobID: j.ID, AccountID: j.AccountID, Task: t.Key(), Status: string(t.Status), Since: since,
					Why: "dispatched long ago and still in the work queue: is the " + t.Category + " worker running? see its consumer's pending count"})
				continue
			}
			if !dryRun {
				if err := r.redispatch(ctx, j, t.Key(), t.Generation, now); err != nil {
					return err
				}
				r.actions.WithLabelValues("redispatched").Inc()
			}
			rep.Actions["redispatched"]++
		}
	}
	return nil
}

func messagePresent(ctx context.Context, tasks jetstream.Stream, seq uint64) (bool, error) {
	if seq == 0 {
		// Unknown (dispatched before a rebuild): treat as lost; a second
		// delivery of a task is harmless, its purge is idempotent.
		return false, nil
	}
	_, err := tasks.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for task message %d: %w", seq, err)
	}
	return true, nil
}

func (r *Reconciler) redispatch(ctx context.Context, j *jobs.Job, k jobs.TaskKey, gen uint32, now time.Time) error {
	t, err := j.Task(k)
	if err != nil {
		return err
	}
	msg, err := dispatch.TaskMessage(j, t, now)
	if err != nil {
		return err
	}
	// A new message id: the original one may still be remembered by the
	// stream's duplicate window, which would drop this publish.
	msg.Header.Set(jetstream.MsgIDHeader, erasurev1.TaskMsgID(j.ID, k.Category, k.Stage, gen)+":redispatch:"+strconv.Itoa(t.Redispatches+1))
	ack, err := r.js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("redispatch %s of job %s: %w", k, j.ID, err)
	}
	var changed bool
	id := j.ID // Update returns no job with its error
	j, err = r.store.Update(ctx, id, func(j *jobs.Job) error {
		var err error
		changed, err = j.MarkRedispatched(k, gen, ack.Sequence, now)
		if err != nil {
			return err
		}
		if !changed {
			return jobstore.ErrNoChange
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %s of job %s redispatched: %w", k, id, err)
	}
	if !changed {
		return nil
	}
	t, err = j.Task(k)
	if err != nil {
		return err
	}
	r.log.Warn("lost task published again", zap.String("job_id", j.ID), zap.String("category", k.Category), zap.String("stage", k.Stage), zap.Int("redispatches", t.Redispatches))
	return r.rec.Record(ctx, lifecycle.Redispatched(j, t, now))
}
