// Package dispatch is the coordinator's fan-out: it publishes every task
// whose due time has come to its category's work queue and marks it
// dispatched. Publishing comes first and carries a deterministic
// Nats-Msg-Id, so a crash between publish and mark leads to a re-publish
// that the stream deduplicates. It sleeps until the next due time or a
// wake-up, never polling in a busy loop.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// Publisher publishes task messages.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Recorder appends lifecycle events.
type Recorder interface {
	Record(ctx context.Context, ev *erasurev1.LifecycleEvent) error
}

// Options tune a Dispatcher.
type Options struct {
	// Batch is how many due tasks are read per round; default 256.
	Batch int64
	// MaxSleep bounds the sleep between rounds, so that tasks scheduled by
	// another coordinator replica are seen; default 2s.
	MaxSleep time.Duration
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// Dispatcher publishes due tasks.
type Dispatcher struct {
	store   *jobstore.Store
	js      Publisher
	rec     Recorder
	log     *zap.Logger
	opts    Options
	wake    chan struct{}
	metrics *prometheus.CounterVec
}

// New returns a dispatcher; reg may be nil.
func New(store *jobstore.Store, js Publisher, rec Recorder, log *zap.Logger, reg prometheus.Registerer, opts Options) *Dispatcher {
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.MaxSleep <= 0 {
		opts.MaxSleep = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lethe_tasks_dispatched_total",
		Help: "Task messages published to workers, by category.",
	}, []string{"category"})
	if reg != nil {
		reg.MustRegister(m)
	}
	return &Dispatcher{store: store, js: js, rec: rec, log: log, opts: opts, wake: make(chan struct{}, 1), metrics: m}
}

// Wake makes a sleeping Run look for due tasks now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches due tasks until ctx is cancelled.
func (d *Dispatcher) Run(ctx context.Context) error {
	failures := 0
	for {
		n, err := d.DispatchDue(ctx)
		sleep := d.opts.MaxSleep
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			sleep = min(time.Duration(failures)*200*time.Millisecond, d.opts.MaxSleep)
			d.log.Warn("dispatch round failed", zap.Error(err), zap.Int("consecutive_failures", failures))
		case n >= int(d.opts.Batch):
			failures = 0
			continue
		default:
			failures = 0
			next, ok, err := d.store.NextDue(ctx)
			if err == nil && ok {
				sleep = min(max(next.Sub(d.opts.Now()), 0), d.opts.MaxSleep)
			}
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// DispatchDue publishes up to one batch of due tasks and returns how many
// it handled.
func (d *Dispatcher) DispatchDue(ctx context.Context) (int, error) {
	due, err := d.store.Due(ctx, d.opts.Now(), d.opts.Batch)
	if err != nil {
		return 0, err
	}
	for _, e := range due {
		if err := d.dispatch(ctx, e); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}

func (d *Dispatcher) dispatch(ctx context.Context, e jobstore.DueEntry) error {
	j, err := d.store.Get(ctx, e.JobID)
	if errors.Is(err, jobs.ErrNotFound) {
		d.log.Warn("due task of unknown job dropped", zap.String("job_id", e.JobID), zap.String("category", e.Task.Category))
		return d.store.DropDue(ctx, e.JobID, e.Task)
	}
	if err != nil {
		return err
	}
	t, err := j.Task(e.Task)
	if err != nil || t.Status != jobs.TaskScheduled {
		// The index lags the job (it moved on in between): nothing to send.
		return d.store.DropDue(ctx, e.JobID, e.Task)
	}
	now := d.opts.Now()
	msg, err := taskMessage(j, t, now)
	if err != nil {
		return err
	}
	ack, err := d.js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("publish %s task of job %s: %w", t.Category, j.ID, err)
	}
	gen := t.Generation
	var changed bool
	j, err = d.store.Update(ctx, j.ID, func(j *jobs.Job) error {
		var err error
		changed, err = j.MarkDispatched(e.Task, gen, now)
		if err != nil {
			return err
		}
		if !changed {
			return jobstore.ErrNoChange
		}
		// Where the message sits, so that reconciliation can tell a task
		// still queued from one the broker lost.
		return j.SetMsgSeq(e.Task, gen, ack.Sequence)
	})
	if err != nil {
		return fmt.Errorf("mark %s task of job %s dispatched: %w", e.Task.Category, e.JobID, err)
	}
	d.metrics.WithLabelValues(e.Task.Category).Inc()
	if t, err := j.Task(e.Task); err == nil && t.DispatchedAt != nil && t.Generation == gen {
		if err := d.rec.Record(ctx, lifecycle.Dispatched(j, t, *t.DispatchedAt)); err != nil {
			return err
		}
	}
	return nil
}

// TaskMessage builds the message of a task's dispatch.
func TaskMessage(j *jobs.Job, t *jobs.Task, now time.Time) (*nats.Msg, error) {
	return taskMessage(j, t, now)
}

func taskMessage(j *jobs.Job, t *jobs.Task, now time.Time) (*nats.Msg, error) {
	data, err := proto.Marshal(&erasurev1.ErasureTask{
		JobId:        j.ID,
		AccountId:    j.AccountID,
		Category:     t.Category,
		Stage:        t.Stage,
		Action:       t.Action,
		Generation:   t.Generation,
		RequestedAt:  timestamppb.New(j.CreatedAt),
		Deadline:     timestamppb.New(j.Deadline),
		DispatchedAt: timestamppb.New(now),
	})
	if err != nil {
		return nil, fmt.Errorf("encode task: %w", err)
	}
	m := nats.NewMsg(erasurev1.TaskSubject(t.Category))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, erasurev1.TaskMsgID(j.ID, t.Category, t.Stage, t.Generation))
	return m, nil
}
