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
	"cmp"
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
	// AsyncPublish publishes a round's tasks without waiting for each
	// ack, when the publisher can (jetstream.JetStream can). Only for a
	// tasks stream on one server: on a replicated stream the server
	// refuses (10164) a fenced publish while another is being replicated,
	// so there they go one at a time.
	AsyncPublish bool
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
	var recording sync.WaitGroup
	defer recording.Wait()
	rounds := make(chan struct{}, maxRecordingRounds)
	failures := 0
	for {
		n, record, err := d.round(ctx)
		if record != nil {
			rounds <- struct{}{}
			recording.Go(func() {
				defer func() { <-rounds }()
				if err := record(); err != nil {
					d.log.Warn("task dispatch events not recorded in the audit trail", zap.Error(err))
				}
			})
		}
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
//
// A round goes in steps, each over all its tasks at once, because a
// round trip per task was what bounded the coordinator (docs/benchmarks.md):
// claim every task in Redis (UpdateMany: one read, one pipeline of
// compare-and-set scripts), publish the claimed ones (with AsyncPublish
// without waiting between them), note where each message sits (again one
// UpdateMany), then record the dispatches in the audit trail.
func (d *Dispatcher) DispatchDue(ctx context.Context) (int, error) {
	n, record, err := d.round(ctx)
	if record != nil {
		if rerr := record(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// round is DispatchDue but for the TASK_DISPATCHED events of the tasks
// it sent, which record writes (nil when none). Run records them while
// the next rounds go on: the audit chain is serial (docs/decisions.md,
// 38), and the tasks are already on their way.
func (d *Dispatcher) round(ctx context.Context) (n int, record func() error, err error) {
	if err := d.resendClaimed(ctx); err != nil {
		return 0, nil, err
	}
	due, err := d.store.Due(ctx, d.opts.Now(), d.opts.Batch)
	if err != nil {
		return 0, nil, err
	}
	if len(due) == 0 {
		return 0, nil, nil
	}
	now := d.opts.Now()
	sends, err := d.claim(ctx, due, now)
	if err != nil {
		return 0, nil, err
	}
	if len(sends) == 0 {
		return len(due), nil, nil
	}
	d.publishAll(ctx, sends)
	var firstErr error
	sent := sends[:0:0]
	for _, sd := range sends {
		if sd.err == nil {
			sent = append(sent, sd)
			continue
		}
		perr := d.publishError(sd.err, fmt.Errorf("publish %s task of job %s: %w", sd.task.Category, sd.job.ID, sd.err))
		// A deposed leader's error wins: it must stop scheduling.
		if firstErr == nil || errors.Is(perr, ErrDeposed) {
			firstErr = perr
		}
		d.giveBack(ctx, sd)
	}
	if err := d.noteSequences(ctx, sent); err != nil && firstErr == nil {
		firstErr = err
	}
	record = func() error {
		// Recorded also when the leadership or the process is ending:
		// the tasks were sent.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		return d.recordDispatched(rctx, sent)
	}
	if firstErr != nil {
		return 0, record, firstErr
	}
	return len(due), record, nil
}

// recordTimeout bounds the recording of one round's dispatch events.
const recordTimeout = 30 * time.Second

// maxRecordingRounds bounds the rounds whose events are being recorded
// while later rounds dispatch: back-pressure from the audit chain, loose
// enough that a round does not wait for the events of the ones before
// it under load (a round is often a task or two).
const maxRecordingRounds = 64

// send is one claimed task on its way to the broker.
type send struct {
	entry jobstore.DueEntry
	job   *jobs.Job
	task  *jobs.Task
	gen   uint32
	msg   *nats.Msg
	ack   *jetstream.PubAck
	err   error
	// recorded: its TASK_DISPATCHED event is to be written (the task is
	// still this dispatch once its sequence is noted).
	recorded bool
}

// claim marks the round's due tasks dispatched, all of a job's in one
// atomic update, and returns those to send. Entries whose job or task no
// longer exists, or whose task moved on (the index lags the job: it was
// cancelled, held, or already sent), are dropped from the index.
func (d *Dispatcher) claim(ctx context.Context, due []jobstore.DueEntry, now time.Time) ([]*send, error) {
	var ids []string
	byJob := map[string][]int{}
	for i, e := range due {
		if _, ok := byJob[e.JobID]; !ok {
			ids = append(ids, e.JobID)
		}
		byJob[e.JobID] = append(byJob[e.JobID], i)
	}
	// Per due entry, as the last call of the update function left it.
	type outcome struct {
		claimed bool
		gen     uint32
		err     error
	}
	outs := make([]outcome, len(due))
	res, err := d.store.UpdateMany(ctx, ids, func(n int, j *jobs.Job) error {
		claimedAny := false
		for _, i := range byJob[ids[n]] {
			o := outcome{}
			t, err := j.Task(due[i].Task)
			if err == nil {
				o.gen = t.Generation
				o.claimed, err = j.MarkDispatched(due[i].Task, o.gen, now)
			}
			o.err = err
			outs[i] = o
			claimedAny = claimedAny || o.claimed
		}
		if !claimedAny {
			return jobstore.ErrNoChange
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim %d due tasks: %w", len(due), err)
	}
	var sends []*send
	for n, id := range ids {
		r := res[n]
		for _, i := range byJob[id] {
			e, o := due[i], outs[i]
			switch {
			case errors.Is(r.Err, jobs.ErrNotFound) || (r.Err == nil && errors.Is(o.err, jobs.ErrUnknownTask)):
				d.log.Warn("due task of unknown job dropped", zap.String("job_id", e.JobID), zap.String("category", e.Task.Category))
				if err := d.store.DropDue(ctx, e.JobID, e.Task); err != nil {
					return nil, err
				}
			case r.Err != nil:
				return nil, fmt.Errorf("claim %s task of job %s: %w", e.Task.Category, e.JobID, r.Err)
			case o.err != nil:
				return nil, fmt.Errorf("claim %s task of job %s: %w", e.Task.Category, e.JobID, o.err)
			case !o.claimed:
				// The index lags the job: nothing to send.
				if err := d.store.DropDue(ctx, e.JobID, e.Task); err != nil {
					return nil, err
				}
			default:
				t, err := r.Job.Task(e.Task)
				if err != nil {
					return nil, err
				}
				msg, err := taskMessage(r.Job, t, now)
				if err != nil {
					return nil, err
				}
				d.fenceMsg(msg)
				sends = append(sends, &send{entry: e, job: r.Job, task: t, gen: o.gen, msg: msg})
			}
		}
	}
	return sends, nil
}

// AsyncPublisher publishes without waiting for the ack (jetstream.JetStream
// does).
type AsyncPublisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// ackWait bounds the wait for a task message's ack.
const ackWait = 10 * time.Second

// publishAll publishes the claimed tasks and sets each one's ack or err.
func (d *Dispatcher) publishAll(ctx context.Context, sends []*send) {
	if d.opts.BeforePublish != nil {
		for _, sd := range sends {
			d.opts.BeforePublish(sd.entry.JobID, sd.entry.Task)
		}
	}
	if ap, ok := d.js.(AsyncPublisher); ok && d.opts.AsyncPublish {
		d.publishAsync(ctx, ap, sends)
		return
	}
	sem := make(chan struct{}, d.opts.Parallel)
	var wg sync.WaitGroup
	for _, sd := range sends {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sd.ack, sd.err = d.publish(ctx, sd.msg)
		}()
	}
	wg.Wait()
}

// publishAsync sends every message without waiting, then collects the
// acks. On one server a connection's messages are stored in the order
// sent, so fenced ones need not wait for each other there.
func (d *Dispatcher) publishAsync(ctx context.Context, ap AsyncPublisher, sends []*send) {
	futures := make([]jetstream.PubAckFuture, len(sends))
	for i, sd := range sends {
		futures[i], sd.err = ap.PublishMsgAsync(sd.msg)
	}
	timer := time.NewTimer(ackWait)
	defer timer.Stop()
	var gaveUp error // once set, what is not acked yet fails with it
	for i, f := range futures {
		sd := sends[i]
		if f == nil {
			continue
		}
		if gaveUp == nil {
			select {
			case sd.ack = <-f.Ok():
				continue
			case sd.err = <-f.Err():
				continue
			case <-timer.C:
				gaveUp = fmt.Errorf("no ack within %s: %w", ackWait, context.DeadlineExceeded)
			case <-ctx.Done():
				gaveUp = ctx.Err()
			}
		}
		select {
		case sd.ack = <-f.Ok():
		case sd.err = <-f.Err():
		default:
			sd.err = gaveUp
		}
	}
}

// giveBack un-claims a task whose publish failed, so that the next round
// (or the next leader) sends it; should this fail, reconciliation finds
// the task dispatched without a message and sends it.
func (d *Dispatcher) giveBack(ctx context.Context, sd *send) {
	if _, err := d.store.Update(context.WithoutCancel(ctx), sd.job.ID, func(j *jobs.Job) error {
		if !j.UnmarkDispatched(sd.entry.Task, sd.gen) {
			return jobstore.ErrNoChange
		}
		return nil
	}); err != nil {
		d.log.Warn("claim of an unsent task not given back; reconciliation will send it", zap.String("job_id", sd.job.ID), zap.String("category", sd.entry.Task.Category), zap.Error(err))
	}
}

// noteSequences records where each sent message sits in the tasks stream,
// so that reconciliation can tell a task still queued from one the broker
// lost, and takes the tasks out of the claimed index.
func (d *Dispatcher) noteSequences(ctx context.Context, sent []*send) error {
	if len(sent) == 0 {
		return nil
	}
	var ids []string
	byJob := map[string][]*send{}
	for _, sd := range sent {
		if _, ok := byJob[sd.job.ID]; !ok {
			ids = append(ids, sd.job.ID)
		}
		byJob[sd.job.ID] = append(byJob[sd.job.ID], sd)
	}
	res, err := d.store.UpdateMany(ctx, ids, func(n int, j *jobs.Job) error {
		for _, sd := range byJob[ids[n]] {
			if err := j.SetMsgSeq(sd.entry.Task, sd.gen, sd.ack.Sequence); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("note where %d sent tasks sit: %w", len(sent), err)
	}
	var firstErr error
	for n, id := range ids {
		if res[n].Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("note where the tasks of job %s sit: %w", id, res[n].Err)
			}
			continue
		}
		for _, sd := range byJob[id] {
			d.metrics.WithLabelValues(sd.entry.Task.Category).Inc()
			if t, err := res[n].Job.Task(sd.entry.Task); err == nil && t.DispatchedAt != nil && t.Generation == sd.gen {
				sd.job, sd.task, sd.recorded = res[n].Job, t, true
			}
		}
	}
	return firstErr
}

// recordDispatched writes the round's TASK_DISPATCHED events, all at
// once, so that the recorder can append them in few batches.
func (d *Dispatcher) recordDispatched(ctx context.Context, sent []*send) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, maxRecording)
	for _, sd := range sent {
		if !sd.recorded {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := d.rec.Record(ctx, lifecycle.Dispatched(sd.job, sd.task, *sd.task.DispatchedAt)); err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// maxRecording bounds the dispatch events being recorded at once.
const maxRecording = 256

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
