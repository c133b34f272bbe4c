// Package reports is the coordinator's intake of worker reports: it reads
// the reports stream through the coordinators' shared durable consumer and
// applies each report to its job. A report is acked only after it was
// applied and recorded, so a crash at any point leads to a redelivery that
// changes nothing twice.
package reports

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/consume"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// ErrBadReport wraps every reason Decode rejects a report for.
var ErrBadReport = errors.New("bad report message")

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

const (
	// MaxReportBytes bounds a report message. A worker's report is well
	// under a kilobyte; a larger one is no report of ours, and applying it
	// would copy it into the job, a lifecycle event and API answers.
	MaxReportBytes = 64 << 10
	// MaxErrorMessageBytes bounds a report's error message (the worker
	// runtime cuts its own at worker.MaxErrorMessageBytes, less).
	MaxErrorMessageBytes = 4 << 10
)

// Decode decodes a worker's report and checks its size, ids, category,
// outcome and error message. Errors wrap ErrBadReport and name the field,
// never its value.
func Decode(data []byte) (*erasurev1.TaskReport, error) {
	if len(data) > MaxReportBytes {
		return nil, fmt.Errorf("%w: %d bytes exceed %d", ErrBadReport, len(data), MaxReportBytes)
	}
	var rep erasurev1.TaskReport
	if err := proto.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%w: not a protobuf TaskReport", ErrBadReport)
	}
	if len(rep.GetErrorMessage()) > MaxErrorMessageBytes || len(rep.GetErrorCode()) > 64 {
		return nil, fmt.Errorf("%w: error_message longer than %d bytes or error_code longer than 64", ErrBadReport, MaxErrorMessageBytes)
	}
	switch {
	case !idPattern.MatchString(rep.GetJobId()):
		return nil, fmt.Errorf("%w: malformed job_id", ErrBadReport)
	case rep.GetAccountId() != "" && !idPattern.MatchString(rep.GetAccountId()):
		return nil, fmt.Errorf("%w: malformed account_id", ErrBadReport)
	case !topology.ValidCategory(rep.GetCategory()):
		return nil, fmt.Errorf("%w: malformed category", ErrBadReport)
	case rep.GetStage() == "" || len(rep.GetStage()) > 64:
		return nil, fmt.Errorf("%w: malformed stage", ErrBadReport)
	}
	if _, ok := erasurev1.TaskOutcome_name[int32(rep.GetOutcome())]; !ok || rep.GetOutcome() == erasurev1.TaskOutcome_TASK_OUTCOME_UNSPECIFIED {
		return nil, fmt.Errorf("%w: unknown outcome", ErrBadReport)
	}
	return &rep, nil
}

// Applier applies a report to its job.
type Applier interface {
	ApplyReport(ctx context.Context, rep *erasurev1.TaskReport) (jobs.Effect, error)
}

// Options tune an Intake.
type Options struct {
	// Concurrency bounds reports handled at once; default 256. A handler
	// applies its report, wakes the dispatcher, then waits for its events'
	// turn in the audit chain (serial: docs/decisions.md, 38) before it
	// acks. With few handlers they all wait there under load, and the next
	// reports, which release tasks, wait for a free handler: latency. The
	// job store serves concurrent updates together, so many cost little.
	Concurrency int
	// UnknownJobRetries is how often a report for an unknown job is tried
	// again (a minute apart) before it is given up; it may arrive before
	// Redis state was rebuilt after a loss. Default 60.
	UnknownJobRetries int
	// UnknownJobDelay spaces those retries; default 1 minute.
	UnknownJobDelay time.Duration
}

// Intake consumes reports.
type Intake struct {
	cons     jetstream.Consumer
	applier  Applier
	log      *zap.Logger
	opts     Options
	rejected *prometheus.CounterVec
}

// New returns an intake reading from cons; reg may be nil.
func New(cons jetstream.Consumer, applier Applier, log *zap.Logger, reg prometheus.Registerer, opts Options) *Intake {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 256
	}
	if opts.UnknownJobRetries <= 0 {
		opts.UnknownJobRetries = 60
	}
	if opts.UnknownJobDelay <= 0 {
		opts.UnknownJobDelay = time.Minute
	}
	m := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lethe_reports_rejected_total",
		Help: "Reports that could not be applied and were given up, by reason.",
	}, []string{"reason"})
	if reg != nil {
		reg.MustRegister(m)
	}
	return &Intake{cons: cons, applier: applier, log: log, opts: opts, rejected: m}
}

// Run applies reports until ctx is cancelled.
func (in *Intake) Run(ctx context.Context) error {
	return consume.Run(ctx, in.cons, in.handle, consume.Options{Concurrency: in.opts.Concurrency}, in.log)
}

func (in *Intake) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		in.log.Error("report without jetstream metadata", zap.Error(err))
		return
	}
	log := in.log.With(zap.Uint64("stream_seq", meta.Sequence.Stream), zap.Uint64("delivery", meta.NumDelivered))
	rep, err := Decode(msg.Data())
	if err != nil {
		_ = msg.Term()
		reason := "undecodable"
		if len(msg.Data()) > MaxReportBytes {
			reason = "oversized"
		}
		in.rejected.WithLabelValues(reason).Inc()
		log.Error("report rejected", zap.Int("bytes", len(msg.Data())), zap.Error(err))
		return
	}
	log = log.With(zap.String("job_id", rep.GetJobId()), zap.String("category", rep.GetCategory()), zap.String("stage", rep.GetStage()))
	eff, err := in.applier.ApplyReport(ctx, rep)
	switch {
	case err == nil:
		if err := msg.Ack(); err != nil {
			log.Warn("report ack failed; the redelivery will be a duplicate", zap.Error(err))
		}
		log.Debug("report applied", zap.String("result", string(eff.Result)), zap.Bool("job_finished", eff.Finished))
	case errors.Is(err, jobs.ErrUnknownTask):
		_ = msg.Term()
		in.rejected.WithLabelValues("unknown_task").Inc()
		log.Error("report rejected: the job has no such task", zap.Error(err))
	case errors.Is(err, jobs.ErrNotFound) && meta.NumDelivered >= uint64(in.opts.UnknownJobRetries):
		_ = msg.Term()
		in.rejected.WithLabelValues("unknown_job").Inc()
		log.Error("report rejected: no such job after retries", zap.Uint64("deliveries", meta.NumDelivered))
	case errors.Is(err, jobs.ErrNotFound):
		_ = msg.NakWithDelay(in.opts.UnknownJobDelay)
		log.Warn("report for an unknown job; retrying later", zap.Duration("retry_in", in.opts.UnknownJobDelay))
	default:
		delay := min(time.Duration(meta.NumDelivered)*time.Second, 30*time.Second)
		_ = msg.NakWithDelay(delay)
		log.Warn("report not applied; retrying", zap.Duration("retry_in", delay), zap.Error(err))
	}
}
