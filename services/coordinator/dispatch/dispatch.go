// Package dispatch is the coordinator's scheduler and fan-out: it publishes
// every task whose due time has come to its category's work queue. A task
// is first claimed in Redis (marked dispatched, atomically with the job, so
// that a cancel or a hold that wins the race stops it), then published with
// a deterministic Nats-Msg-Id, so a re-publish is deduplicated by the
// stream. It sleeps until the next due time or a wake-up, never polling in
// a busy loop. With a lease, only the replica holding it schedules, and
// every task it publishes is fenced: it names the leadership's fence
// message in the tasks stream, which a new leader replaces, so a paused
// old leader's late publish is refused by the stream itself.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
	"github.com/lethe-privacy/lethe/services/coordinator/lease"
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
	// Lease, when set, elects the one replica that schedules (see package
	// lease); without it this dispatcher always schedules, unfenced.
	Lease Leaser
	// Parallel bounds the tasks of a round dispatched at once; default 16.
	Parallel int
	// ResendAfter is how long a claimed task may wait for its message to
	// be known stored before the scheduler sends it again (a crash between
	// claim and publish); default 15s. The resend carries the same
	// Nats-Msg-Id, so a message that was stored after all is not doubled.
	ResendAfter time.Duration
	// BeforePublish, when set, is called between claiming a task and
	// publishing it: tests use it to pause a leader at the worst moment.
	BeforePublish func(jobID string, task jobs.TaskKey)
}

// Leaser is the scheduler lease (package lease).
type Leaser interface {
	TryAcquire(ctx context.Context) (token int64, ok bool, holder string, err error)
	Renew(ctx context.Context, token int64) error
	Release(ctx context.Context, token int64) error
	TTL() time.Duration
	Holder() string
}

// ErrDeposed means a publish was refused because another replica has
// taken the scheduler lease since this one got it.
var ErrDeposed = errors.New("another coordinator replica took over scheduling")

// Dispatcher publishes due tasks.
type Dispatcher struct {
	store   *jobstore.Store
	js      Publisher
	rec     Recorder
	log     *zap.Logger
	opts    Options
	wake    chan struct{}
	metrics *prometheus.CounterVec
	leader  prometheus.Gauge
	// fence is the sequence of this leadership's fence message; 0 when
	// unfenced. Only Run's goroutine writes it.
	fence atomic.Uint64
	// fencedPub serialises fenced publishes: on a replicated stream the
	// server refuses (10164) a publish that checks the fence subject
	// while another such publish is still being replicated, which would
	// read as a lost leadership.
	fencedPub sync.Mutex
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
	if opts.Parallel <= 0 {
		opts.Parallel = 16
	}
	if opts.ResendAfter <= 0 {
		opts.ResendAfter = 15 * time.Second
	}
	m := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lethe_tasks_dispatched_total",
		Help: "Task messages published to workers, by category.",
	}, []string{"category"})
	leader := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lethe_scheduler_leader",
		Help: "1 while this coordinator replica holds the scheduler lease and dispatches due tasks.",
	})
	if reg != nil {
		reg.MustRegister(m, leader)
	}
	return &Dispatcher{store: store, js: js, rec: rec, log: log, opts: opts, wake: make(chan struct{}, 1), metrics: m, leader: leader}
}

// Wake makes a sleeping Run look for due tasks now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches due tasks until ctx is cancelled: at once without a
// lease, else whenever this replica holds the lease.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.opts.Lease == nil {
		d.leader.Set(1)
		defer d.leader.Set(0)
		return d.loop(ctx)
	}
	l := d.opts.Lease
	for {
		token, ok, holder, err := l.TryAcquire(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			d.log.Warn("scheduler lease unreachable", zap.Error(err))
		case ok:
			d.lead(ctx, token)
		default:
			d.log.Debug("another replica schedules", zap.String("holder", holder))
		}
		t := time.NewTimer(l.TTL() / 3)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// lead schedules while the lease with token is held: it publishes the
// fence message, then dispatches, renewing the lease every third of its
// TTL, until the lease is lost, a publish is refused as deposed, or ctx
// ends (then it releases the lease so a peer takes over at once).
func (d *Dispatcher) lead(ctx context.Context, token int64) {
	l := d.opts.Lease
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	seq, err := d.publishFence(lctx, token)
	if err != nil {
		d.log.Warn("scheduler fence not published; not leading", zap.Error(err))
		return
	}
	d.fence.Store(seq)
	d.leader.Set(1)
	d.log.Info("scheduling: this replica holds the lease", zap.Int64("token", token), zap.Uint64("fence_seq", seq), zap.String("holder", l.Holder()))
	defer func() {
		d.leader.Set(0)
		d.fence.Store(0)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer rcancel()
		_ = l.Release(rctx, token)
		d.log.Info("scheduling stopped", zap.Int64("token", token), zap.NamedError("cause", context.Cause(lctx)))
	}()
	go func() {
		last := time.Now()
		t := time.NewTicker(l.TTL() / 3)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			err := l.Renew(lctx, token)
			switch {
			case err == nil:
				last = time.Now()
			case errors.Is(err, lease.ErrLost):
				cancel(err)
				return
			case time.Since(last) > l.TTL():
				// Redis unreachable for a whole TTL: another replica may
				// hold the lease by now.
				cancel(fmt.Errorf("lease not renewed for %s: %w", l.TTL(), err))
				return
			}
		}
	}()
	if err := d.loop(lctx); err != nil {
		cancel(err)
	}
}

// publishFence appends this leadership's fence message: from now on the
// tasks stream refuses task messages that name an older one.
func (d *Dispatcher) publishFence(ctx context.Context, token int64) (uint64, error) {
	m := nats.NewMsg(erasurev1.SchedulerFenceSubject)
	m.Data = []byte(strconv.FormatInt(token, 10) + " " + d.opts.Lease.Holder())
	// No Nats-Msg-Id: a re-published fence (after a purge removed the
	// last one) must be a new message, not a duplicate of the old.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := d.js.PublishMsg(pctx, m)
	if err != nil {
		return 0, fmt.Errorf("publish scheduler fence: %w", err)
	}
	return ack.Sequence, nil
}

// loop runs dispatch rounds until ctx ends (nil) or this replica is
// deposed (ErrDeposed).
func (d *Dispatcher) loop(ctx context.Context) error {
	failures := 0
	for {
		n, err := d.DispatchDue(ctx)
		sleep := d.opts.MaxSleep
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrDeposed):
			d.log.Warn("deposed: another replica schedules now", zap.Error(err))
			return err
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
	if err := d.resendClaimed(ctx); err != nil {
		return 0, err
	}
	due, err := d.store.Due(ctx, d.opts.Now(), d.opts.Batch)
	if err != nil {
		return 0, err
	}
	// Each task is a few round trips to Redis and one to NATS: a round's
	// tasks go out Parallel at a time. Tasks of one job serialise on the
	// job's WATCH (a conflict retries), so order does not matter.
	sem := make(chan struct{}, d.opts.Parallel)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, e := range due {
		sem <- struct{}{}
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := d.dispatch(ctx, e); err != nil {
				mu.Lock()
				// A deposed leader's error wins: it must stop scheduling.
				if firstErr == nil || errors.Is(err, ErrDeposed) {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return len(due), nil
}

func (d *Dispatcher) dispatch(ctx context.Context, e jobstore.DueEntry) error {
	now := d.opts.Now()
	var gen uint32
	claimed := false
	// Claim first: marking the task dispatched is atomic with the job, so
	// a cancel or hold that got there first wins and nothing is sent.
	j, err := d.store.Update(ctx, e.JobID, func(j *jobs.Job) error {
		t, err := j.Task(e.Task)
		if err != nil {
			return err
		}
		gen = t.Generation
		claimed, err = j.MarkDispatched(e.Task, gen, now)
		if err != nil {
			return err
		}
		if !claimed {
			return jobstore.ErrNoChange
		}
		return nil
	})
	switch {
	case errors.Is(err, jobs.ErrNotFound) || errors.Is(err, jobs.ErrUnknownTask):
		d.log.Warn("due task of unknown job dropped", zap.String("job_id", e.JobID), zap.String("category", e.Task.Category))
		return d.store.DropDue(ctx, e.JobID, e.Task)
	case err != nil:
		return fmt.Errorf("claim %s task of job %s: %w", e.Task.Category, e.JobID, err)
	case !claimed:
		// The index lags the job (it moved on, or is held or ended):
		// nothing to send.
		return d.store.DropDue(ctx, e.JobID, e.Task)
	}
	t, err := j.Task(e.Task)
	if err != nil {
		return err
	}
	msg, err := taskMessage(j, t, now)
	if err != nil {
		return err
	}
	d.fenceMsg(msg)
	if d.opts.BeforePublish != nil {
		d.opts.BeforePublish(e.JobID, e.Task)
	}
	ack, err := d.publish(ctx, msg)
	if err != nil {
		perr := d.publishError(err, fmt.Errorf("publish %s task of job %s: %w", t.Category, j.ID, err))
		// Give the claim back, so that the next leader (or round) sends
		// it; should this fail, reconciliation finds the task dispatched
		// without a message and sends it.
		if _, uerr := d.store.Update(context.WithoutCancel(ctx), j.ID, func(j *jobs.Job) error {
			if !j.UnmarkDispatched(e.Task, gen) {
				return jobstore.ErrNoChange
			}
			return nil
		}); uerr != nil {
			d.log.Warn("claim of an unsent task not given back; reconciliation will send it", zap.String("job_id", j.ID), zap.String("category", e.Task.Category), zap.Error(uerr))
		}
		return perr
	}
	j, err = d.store.Update(ctx, j.ID, func(j *jobs.Job) error {
		// Where the message sits, so that reconciliation can tell a task
		// still queued from one the broker lost.
		if err := j.SetMsgSeq(e.Task, gen, ack.Sequence); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("note where the %s task of job %s sits: %w", e.Task.Category, e.JobID, err)
	}
	d.metrics.WithLabelValues(e.Task.Category).Inc()
	if t, err := j.Task(e.Task); err == nil && t.DispatchedAt != nil && t.Generation == gen {
		if err := d.rec.Record(ctx, lifecycle.Dispatched(j, t, *t.DispatchedAt)); err != nil {
			return err
		}
	}
	return nil
}

// resendClaimed sends again the tasks claimed long ago whose message is
// not known to be stored: a crash (or a deposed leader) between the claim
// and the publish, or between the publish and noting its sequence.
func (d *Dispatcher) resendClaimed(ctx context.Context) error {
	old, err := d.store.Claimed(ctx, d.opts.Now().Add(-d.opts.ResendAfter), d.opts.Batch)
	if err != nil {
		return err
	}
	for _, e := range old {
		j, err := d.store.Get(ctx, e.JobID)
		if errors.Is(err, jobs.ErrNotFound) {
			_ = d.store.DropClaimed(ctx, e.JobID, e.Task)
			continue
		}
		if err != nil {
			return err
		}
		t, err := j.Task(e.Task)
		if err != nil || t.Status != jobs.TaskDispatched || t.MsgSeq != 0 || t.DispatchedAt == nil {
			_ = d.store.DropClaimed(ctx, e.JobID, e.Task)
			continue
		}
		msg, err := taskMessage(j, t, *t.DispatchedAt)
		if err != nil {
			return err
		}
		d.fenceMsg(msg)
		ack, err := d.publish(ctx, msg)
		if err != nil {
			return d.publishError(err, fmt.Errorf("re-send claimed %s task of job %s: %w", t.Category, j.ID, err))
		}
		gen := t.Generation
		if _, err := d.store.Update(ctx, j.ID, func(j *jobs.Job) error {
			return j.SetMsgSeq(e.Task, gen, ack.Sequence)
		}); err != nil {
			return fmt.Errorf("note where the re-sent %s task of job %s sits: %w", e.Task.Category, e.JobID, err)
		}
		d.log.Info("re-sent a task claimed without a stored message", zap.String("job_id", j.ID), zap.String("category", t.Category), zap.Bool("was_duplicate", ack.Duplicate))
	}
	return nil
}

// publish sends a task message; fenced ones one at a time.
func (d *Dispatcher) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	if msg.Header.Get(expectedLastSubjSeqSubjHeader) != "" {
		d.fencedPub.Lock()
		defer d.fencedPub.Unlock()
	}
	return d.js.PublishMsg(ctx, msg)
}

func (d *Dispatcher) fenceMsg(msg *nats.Msg) {
	if fence := d.fence.Load(); fence > 0 {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(fence, 10))
		msg.Header.Set(expectedLastSubjSeqSubjHeader, erasurev1.SchedulerFenceSubject)
	}
}

// publishError marks a publish refused by the fence as ErrDeposed.
func (d *Dispatcher) publishError(err, wrapped error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("%w: %w", ErrDeposed, wrapped)
	}
	return wrapped
}

// expectedLastSubjSeqSubjHeader makes the stream check
// Nats-Expected-Last-Subject-Sequence against another subject (the fence)
// than the message's own (nats-server 2.11 and later).
const expectedLastSubjSeqSubjHeader = "Nats-Expected-Last-Subject-Sequence-Subject"

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
