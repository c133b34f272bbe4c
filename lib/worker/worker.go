// Package worker is the runtime every purge worker runs on. A worker service
// implements Purger for its category; the runtime pulls tasks from the
// category's durable consumer with bounded concurrency, runs the purge with
// a deadline and InProgress heartbeats, retries transient failures with
// exponential backoff, reports the outcome to the coordinator, and only then
// acks. It alone decides ack, nak-with-delay or term, and logs once per
// task. It also answers footprint requests for the category.
package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lethe-privacy/lethe/lib/consume"
	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// RetryPolicy spaces the attempts of a task that fails transiently.
type RetryPolicy struct {
	// InProcessAttempts is how often a purge is tried within one delivery
	// before the message is nak'ed with a delay. 1 disables in-process
	// retries.
	InProcessAttempts int
	// InProcessInterval is the first pause between in-process attempts.
	InProcessInterval time.Duration
	// RedeliveryInitial is the nak delay after the first failed delivery;
	// each later delivery multiplies it by RedeliveryMultiplier, up to
	// RedeliveryMax.
	RedeliveryInitial    time.Duration
	RedeliveryMultiplier float64
	RedeliveryMax        time.Duration
	// MaxAttempts is how many deliveries a task gets before the worker
	// gives up and dead-letters it; 0 means the consumer's MaxDeliver. The
	// lower of the two wins.
	MaxAttempts int
	// NeverRetry lists error classes (see ErrorClass) that fail a task at
	// once, like a permanent error.
	NeverRetry []string
}

// Config configures a Runtime. Category is required; the rest has defaults.
type Config struct {
	Category string
	// WorkerID names this replica in reports; default hostname-pid.
	WorkerID string
	// Concurrency bounds the purges running at once; default 4.
	Concurrency int
	// PurgeTimeout bounds one purge attempt; default 10 minutes.
	PurgeTimeout time.Duration
	// FootprintTimeout bounds one footprint query; default 10 seconds.
	FootprintTimeout time.Duration
	// Heartbeat is the InProgress interval; default a third of the
	// consumer's shortest ack wait.
	Heartbeat time.Duration
	// DrainTimeout bounds how long running purges may finish after
	// shutdown starts; default 30 seconds.
	DrainTimeout time.Duration
	// PullExpiry and PullHeartbeat guard against a pull that stalls for the
	// whole default expiry (nats.go#1622); defaults 5s and 500ms.
	PullExpiry    time.Duration
	PullHeartbeat time.Duration
	Retry         RetryPolicy
}

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("invalid worker config")

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if !topology.ValidCategory(c.Category) {
		return fmt.Errorf("%w: category %q must be lower-case letters only", ErrInvalidConfig, c.Category)
	}
	if c.Concurrency < 0 || c.Retry.InProcessAttempts < 0 || c.Retry.RedeliveryMultiplier < 0 {
		return fmt.Errorf("%w: negative concurrency or retry setting", ErrInvalidConfig)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		c.WorkerID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.PurgeTimeout == 0 {
		c.PurgeTimeout = 10 * time.Minute
	}
	if c.FootprintTimeout == 0 {
		c.FootprintTimeout = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.PullExpiry == 0 {
		c.PullExpiry = 5 * time.Second
	}
	if c.PullHeartbeat == 0 {
		c.PullHeartbeat = 500 * time.Millisecond
	}
	if c.Retry.InProcessAttempts == 0 {
		c.Retry.InProcessAttempts = 3
	}
	if c.Retry.InProcessInterval == 0 {
		c.Retry.InProcessInterval = 200 * time.Millisecond
	}
	if c.Retry.RedeliveryInitial == 0 {
		c.Retry.RedeliveryInitial = 5 * time.Second
	}
	if c.Retry.RedeliveryMultiplier == 0 {
		c.Retry.RedeliveryMultiplier = 2
	}
	if c.Retry.RedeliveryMax == 0 {
		c.Retry.RedeliveryMax = 5 * time.Minute
	}
	return c
}

// Broker is the part of JetStream the runtime uses.
type Broker interface {
	Consumer(ctx context.Context, stream, consumer string) (jetstream.Consumer, error)
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Runtime runs one category's worker loop. Create it with New, then Run.
type Runtime struct {
	cfg     Config
	js      Broker
	nc      *nats.Conn
	purger  Purger
	log     *zap.Logger
	metrics *Metrics
}

// New returns a runtime for purger. metrics may be nil.
func New(cfg Config, nc *nats.Conn, js Broker, purger Purger, logger *zap.Logger, metrics *Metrics) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil || js == nil || purger == nil || logger == nil {
		return nil, fmt.Errorf("%w: nats connection, jetstream, purger and logger are required", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	return &Runtime{
		cfg:     cfg,
		js:      js,
		nc:      nc,
		purger:  purger,
		log:     logger.With(zap.String("category", cfg.Category), zap.String("worker_id", cfg.WorkerID)),
		metrics: metrics,
	}, nil
}

// Run consumes tasks and answers footprint queries until ctx is cancelled,
// then stops pulling, lets running purges finish within the drain timeout,
// and returns. Tasks that were fetched but not started are nak'ed so that
// another replica takes them at once.
func (r *Runtime) Run(ctx context.Context) error {
	cons, err := r.js.Consumer(ctx, erasurev1.TasksStream, erasurev1.WorkerConsumer(r.cfg.Category))
	if err != nil {
		return fmt.Errorf("look up consumer %s: %w", erasurev1.WorkerConsumer(r.cfg.Category), err)
	}
	ccfg := cons.CachedInfo().Config
	maxDeliver := ccfg.MaxDeliver
	heartbeat := r.cfg.Heartbeat
	if heartbeat == 0 {
		heartbeat = shortestAckWait(ccfg) / 3
	}

	fsub, err := r.nc.QueueSubscribe(erasurev1.FootprintSubject(r.cfg.Category), erasurev1.WorkerConsumer(r.cfg.Category), func(m *nats.Msg) {
		r.answerFootprint(ctx, m)
	})
	if err != nil {
		return fmt.Errorf("subscribe to footprint requests: %w", err)
	}
	defer func() { _ = fsub.Unsubscribe() }()

	r.log.Info("worker started", zap.Int("concurrency", r.cfg.Concurrency), zap.Int("max_deliver", maxDeliver), zap.Duration("heartbeat", heartbeat))
	err = consume.Run(ctx, cons, func(ctx context.Context, msg jetstream.Msg) {
		r.handle(ctx, msg, maxDeliver, heartbeat)
	}, consume.Options{
		Concurrency:   r.cfg.Concurrency,
		PullExpiry:    r.cfg.PullExpiry,
		PullHeartbeat: r.cfg.PullHeartbeat,
		DrainTimeout:  r.cfg.DrainTimeout,
	}, r.log)
	if err != nil {
		return fmt.Errorf("consume tasks of %s: %w", r.cfg.Category, err)
	}
	r.log.Info("worker stopped")
	return nil
}

func shortestAckWait(c jetstream.ConsumerConfig) time.Duration {
	d := c.AckWait
	for _, b := range c.BackOff {
		if b > 0 && (d == 0 || b < d) {
			d = b
		}
	}
	if d <= 0 {
		d = 30 * time.Second
	}
	return d
}

// outcome is what became of one delivery.
type outcome string

const (
	outcomeSucceeded outcome = "succeeded"
	outcomeRetry     outcome = "retry"
	outcomeFailed    outcome = "failed"
	outcomeBadTask   outcome = "bad_task"
	outcomeShutdown  outcome = "shutdown"
)

func (r *Runtime) handle(ctx context.Context, msg jetstream.Msg, maxDeliver int, heartbeat time.Duration) {
	start := time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack.
		r.log.Error("task without jetstream metadata", zap.Error(err))
		return
	}
	log := r.log.With(zap.Uint64("stream_seq", meta.Sequence.Stream), zap.Uint64("attempt", meta.NumDelivered))

	task, err := DecodeTask(msg.Data(), r.cfg.Category)
	if err != nil {
		// Without a valid job id there is nobody to report to; the message
		// is terminated and counted, never retried forever. The error names
		// the field, never its value.
		_ = msg.Term()
		r.metrics.observe(r.cfg.Category, string(outcomeBadTask), 0, time.Since(start))
		log.Error("task rejected", zap.Int("bytes", len(msg.Data())), zap.Error(err))
		return
	}
	task.Attempt = uint32(meta.NumDelivered)
	log = log.With(zap.String("job_id", task.JobID), zap.String("account_id", task.AccountID), zap.String("stage", task.Stage))

	hbCtx, stopHB := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	res, purgeErr := r.purgeWithRetry(ctx, task)
	stopHB()
	// From here the error becomes a log line, a report, a dead letter and
	// a lifecycle event: what a database quoted in it stays out.
	purgeErr = redact.Error(purgeErr)

	maxAttempts := maxDeliver
	if r.cfg.Retry.MaxAttempts > 0 && (maxAttempts <= 0 || r.cfg.Retry.MaxAttempts < maxAttempts) {
		maxAttempts = r.cfg.Retry.MaxAttempts
	}
	lastDelivery := maxAttempts > 0 && int(meta.NumDelivered) >= maxAttempts
	report := &erasurev1.TaskReport{
		JobId:       task.JobID,
		AccountId:   task.AccountID,
		Category:    task.Category,
		Stage:       task.Stage,
		Generation:  task.Generation,
		Attempt:     task.Attempt,
		StartedAt:   timestamppb.New(start),
		FinishedAt:  timestamppb.Now(),
		WorkerId:    r.cfg.WorkerID,
		ItemsPurged: res.ItemsPurged,
	}
	class := ErrorClass(purgeErr)
	var out outcome
	switch {
	case purgeErr == nil:
		out = outcomeSucceeded
		report.Outcome = erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED
		for name, at := range res.Anchors {
			if report.Anchors == nil {
				report.Anchors = map[string]*timestamppb.Timestamp{}
			}
			report.Anchors[name] = timestamppb.New(at)
		}
	case ctx.Err() != nil:
		out = outcomeShutdown
	case IsPermanent(purgeErr) || slices.Contains(r.cfg.Retry.NeverRetry, class):
		out = outcomeFailed
		report.Outcome = erasurev1.TaskOutcome_TASK_OUTCOME_FAILED
		report.ErrorCode = class
		report.ErrorMessage = purgeErr.Error()
	case lastDelivery:
		out = outcomeFailed
		report.Outcome = erasurev1.TaskOutcome_TASK_OUTCOME_FAILED
		report.ErrorCode = "max_deliveries"
		report.ErrorMessage = fmt.Sprintf("gave up after %d deliveries: %v", meta.NumDelivered, purgeErr)
	default:
		out = outcomeRetry
		report.Outcome = erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING
		report.ErrorCode = class
		report.ErrorMessage = purgeErr.Error()
	}

	// The message travels in the report, the dead letter's header, the
	// job and a lifecycle event: bounded, so that a store's endless error
	// text is never the reason a report is refused.
	report.ErrorMessage = cutMessage(report.ErrorMessage, MaxErrorMessageBytes)

	switch out {
	case outcomeShutdown:
		// Someone else continues; the purge is idempotent.
		_ = msg.Nak()
		log.Info("task handed back at shutdown", zap.Error(purgeErr))
	case outcomeRetry:
		delay := r.redeliveryDelay(meta.NumDelivered)
		// The attempt shows in the job's history; losing this report
		// loses only that line, never the task.
		if err := r.publishReport(ctx, report); err != nil {
			log.Warn("retrying report not published", zap.Error(err))
		}
		_ = msg.NakWithDelay(delay)
		log.Warn("task failed, will retry", zap.Duration("retry_in", delay), zap.Int("max_attempts", maxAttempts), zap.String("error_class", class), zap.Error(purgeErr))
	default:
		if out == outcomeFailed {
			// Dead-lettered first, so that a failure is never only in a
			// log line: if this fails, the task is retried instead.
			if err := r.deadLetter(ctx, msg, meta, report); err != nil {
				delay := r.redeliveryDelay(meta.NumDelivered)
				_ = msg.NakWithDelay(delay)
				log.Warn("dead letter not stored, will retry the task", zap.Duration("retry_in", delay), zap.Error(err))
				out = outcomeRetry
				break
			}
		}
		if err := r.publishReport(ctx, report); err != nil {
			// The purge is idempotent: try the whole task again later.
			delay := r.redeliveryDelay(meta.NumDelivered)
			_ = msg.NakWithDelay(delay)
			log.Warn("report not published, will retry the task", zap.Duration("retry_in", delay), zap.Error(err))
			out = outcomeRetry
			break
		}
		if out == outcomeSucceeded {
			if err := msg.DoubleAck(ctx); err != nil {
				// The report is out; a redelivery re-reports, deduplicated.
				log.Warn("ack not confirmed", zap.Error(err))
			}
			log.Info("task succeeded", zap.Int64("items_purged", res.ItemsPurged), zap.Duration("took", time.Since(start)))
		} else {
			_ = msg.Term()
			log.Error("task failed for good; dead-lettered", zap.String("error_code", report.ErrorCode), zap.Error(purgeErr))
		}
	}
	r.metrics.observe(r.cfg.Category, string(out), res.ItemsPurged, time.Since(start))
}

// purgeWithRetry runs the purge up to InProcessAttempts times. Each attempt
// gets its own deadline derived from ctx, so an earlier attempt's timeout
// never cancels a later one.
func (r *Runtime) purgeWithRetry(ctx context.Context, task Task) (Result, error) {
	var res Result
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = r.cfg.Retry.InProcessInterval
	bo.MaxElapsedTime = 0
	var policy backoff.BackOff = backoff.WithContext(
		backoff.WithMaxRetries(bo, uint64(r.cfg.Retry.InProcessAttempts-1)), ctx)
	err := backoff.Retry(func() error {
		attemptCtx, cancel := context.WithTimeout(ctx, r.cfg.PurgeTimeout)
		defer cancel()
		// A failed attempt may have removed part of the data; its count is
		// kept so the report covers every attempt of this delivery.
		part, err := r.purger.Purge(attemptCtx, task)
		res.ItemsPurged += part.ItemsPurged
		if err == nil {
			res.Anchors = part.Anchors
		}
		if err != nil && IsPermanent(err) {
			return backoff.Permanent(err)
		}
		return err
	}, policy)
	// backoff.Permanent's wrapper stays inside the retry loop.
	var bp *backoff.PermanentError
	if errors.As(err, &bp) {
		err = bp.Err
	}
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("purge timed out after %s: %w", r.cfg.PurgeTimeout, err)
	}
	return res, err
}

// MaxErrorMessageBytes bounds the error message of a report (the
// coordinator refuses reports with longer ones).
const MaxErrorMessageBytes = 2048

// cutMessage cuts s to at most n bytes at a character boundary, marking
// the cut.
func cutMessage(s string, n int) string {
	const mark = " …(cut)"
	if len(s) <= n {
		return s
	}
	end := n - len(mark)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + mark
}

// redeliveryDelay is the nak delay after the given delivery failed.
func (r *Runtime) redeliveryDelay(delivered uint64) time.Duration {
	d := float64(r.cfg.Retry.RedeliveryInitial)
	for i := uint64(1); i < delivered; i++ {
		d *= r.cfg.Retry.RedeliveryMultiplier
		if d >= float64(r.cfg.Retry.RedeliveryMax) {
			return r.cfg.Retry.RedeliveryMax
		}
	}
	return min(time.Duration(d), r.cfg.Retry.RedeliveryMax)
}

// deadLetter copies the task message to the category's dead-letter
// subject with why it failed, deduplicated by its stream sequence.
func (r *Runtime) deadLetter(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, rep *erasurev1.TaskReport) error {
	m := nats.NewMsg(erasurev1.DeadLetterSubject(r.cfg.Category))
	m.Data = msg.Data()
	m.Header.Set(jetstream.MsgIDHeader, erasurev1.DeadLetterMsgID(meta.Stream, meta.Sequence.Stream))
	m.Header.Set(erasurev1.HeaderDeadReason, rep.GetErrorMessage())
	m.Header.Set(erasurev1.HeaderDeadCode, rep.GetErrorCode())
	m.Header.Set(erasurev1.HeaderDeadAttempts, strconv.FormatUint(meta.NumDelivered, 10))
	m.Header.Set(erasurev1.HeaderDeadSource, meta.Stream+":"+strconv.FormatUint(meta.Sequence.Stream, 10))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := r.js.PublishMsg(pctx, m); err != nil {
		return fmt.Errorf("dead-letter task of job %s: %w", rep.GetJobId(), err)
	}
	return nil
}

func (r *Runtime) publishReport(ctx context.Context, rep *erasurev1.TaskReport) error {
	data, err := proto.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	m := nats.NewMsg(erasurev1.ReportSubject(rep.GetCategory()))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, erasurev1.ReportMsgID(rep.GetJobId(), rep.GetCategory(), rep.GetStage(), rep.GetGeneration(), rep.GetOutcome(), rep.GetAttempt()))
	op := func() error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := r.js.PublishMsg(pctx, m)
		return err
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxElapsedTime = 0
	if err := backoff.Retry(op, backoff.WithContext(backoff.WithMaxRetries(bo, 4), ctx)); err != nil {
		return fmt.Errorf("publish report of job %s: %w", rep.GetJobId(), err)
	}
	return nil
}

func (r *Runtime) answerFootprint(ctx context.Context, m *nats.Msg) {
	reply := &erasurev1.FootprintReply{Category: r.cfg.Category}
	if ids, err := DecodeFootprintRequest(m.Data); err != nil {
		reply.Error = err.Error()
	} else {
		fctx, cancel := context.WithTimeout(ctx, r.cfg.FootprintTimeout)
		fps, err := r.purger.Footprint(fctx, ids)
		cancel()
		if err != nil {
			r.log.Warn("footprint query failed", zap.Int("accounts", len(ids)), zap.Error(redact.Error(err)))
			reply.Error = "footprint query failed; see the worker's log"
		}
		for _, fp := range fps {
			reply.Accounts = append(reply.Accounts, &erasurev1.AccountFootprint{AccountId: fp.AccountID, Items: fp.Items, Detail: fp.Detail})
		}
	}
	data, err := proto.Marshal(reply)
	if err != nil {
		r.log.Error("encode footprint reply", zap.Error(err))
		return
	}
	if err := m.Respond(data); err != nil {
		r.log.Warn("send footprint reply", zap.Error(err))
	}
}
