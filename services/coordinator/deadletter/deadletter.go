// Package deadletter keeps failed tasks visible and recoverable. Workers
// copy a task that failed for good to the dead-letter stream themselves;
// this package covers the case they cannot — a worker that crashed or hung
// on every delivery until JetStream gave up — by turning the consumer's
// max-deliveries advisory into a dead letter and a failed task. It also
// lists, shows and replays dead letters for SREs.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lethe-privacy/lethe/lib/consume"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// Service is what dead-letter handling needs of the coordinator.
type Service interface {
	ApplyReport(ctx context.Context, rep *erasurev1.TaskReport) (jobs.Effect, error)
	Replay(ctx context.Context, id string, sel jobs.ReplaySelector, actor, reason string) (*jobs.Job, []jobs.TaskKey, error)
	Get(ctx context.Context, id string) (*jobs.Job, error)
}

// Queue reads and handles dead letters.
type Queue struct {
	js       jetstream.JetStream
	svc      Service
	log      *zap.Logger
	advised  prometheus.Counter
	replayed *prometheus.CounterVec
}

// New returns the dead-letter queue; reg may be nil.
func New(js jetstream.JetStream, svc Service, log *zap.Logger, reg prometheus.Registerer) *Queue {
	q := &Queue{
		js: js, svc: svc, log: log,
		advised: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lethe_dead_letters_from_advisories_total",
			Help: "Tasks dead-lettered by the coordinator because their deliveries ran out without any report (a worker crashed or hung on them).",
		}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_dead_letters_replayed_total",
			Help: "Dead letters replayed, by category and result (replayed, resolved: the task had already succeeded).",
		}, []string{"category", "result"}),
	}
	if reg != nil {
		reg.MustRegister(q.advised, q.replayed)
	}
	return q
}

// advisory is JetStream's max-deliveries advisory
// (io.nats.jetstream.advisory.v1.max_deliver).
type advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// RunAdvisories consumes max-deliveries advisories until ctx is cancelled.
func (q *Queue) RunAdvisories(ctx context.Context) error {
	cons, err := q.js.Consumer(ctx, erasurev1.AdvisoryStream, erasurev1.AdvisoryConsumer)
	if err != nil {
		return fmt.Errorf("look up the advisories consumer: %w", err)
	}
	return consume.Run(ctx, cons, q.handleAdvisory, consume.Options{Concurrency: 4}, q.log)
}

func (q *Queue) handleAdvisory(ctx context.Context, msg jetstream.Msg) {
	var adv advisory
	if err := json.Unmarshal(msg.Data(), &adv); err != nil || adv.Stream != erasurev1.TasksStream || adv.StreamSeq == 0 {
		_ = msg.Term()
		q.log.Error("advisory rejected: not a max-deliveries advisory of the tasks stream", zap.Error(err))
		return
	}
	log := q.log.With(zap.Uint64("stream_seq", adv.StreamSeq), zap.String("consumer", adv.Consumer))
	if err := q.deadLetterFromAdvisory(ctx, adv, log); err != nil {
		_ = msg.NakWithDelay(5 * time.Second)
		log.Warn("advisory not handled yet; retrying", zap.Error(err))
		return
	}
	_ = msg.Ack()
}

func (q *Queue) deadLetterFromAdvisory(ctx context.Context, adv advisory, log *zap.Logger) error {
	tasks, err := q.js.Stream(ctx, erasurev1.TasksStream)
	if err != nil {
		return fmt.Errorf("look up the tasks stream: %w", err)
	}
	raw, err := tasks.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// A worker answered at the last moment, or this advisory was
		// handled before: nothing is left to rescue.
		log.Info("max-deliveries advisory for a task already gone")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read task message %d: %w", adv.StreamSeq, err)
	}
	var task erasurev1.ErasureTask
	if err := proto.Unmarshal(raw.Data, &task); err != nil || task.GetJobId() == "" {
		// Undecodable: keep it as a dead letter all the same, so that
		// nothing disappears silently.
		task = erasurev1.ErasureTask{Category: strings.TrimPrefix(raw.Subject, erasurev1.TaskSubjectPrefix)}
	}
	reason := fmt.Sprintf("delivered %d times without an answer: the worker crashed or hung on it", adv.Deliveries)
	m := nats.NewMsg(erasurev1.DeadLetterSubject(task.GetCategory()))
	m.Data = raw.Data
	m.Header.Set(jetstream.MsgIDHeader, erasurev1.DeadLetterMsgID(erasurev1.TasksStream, adv.StreamSeq))
	m.Header.Set(erasurev1.HeaderDeadReason, reason)
	m.Header.Set(erasurev1.HeaderDeadCode, "max_deliveries")
	m.Header.Set(erasurev1.HeaderDeadAttempts, strconv.FormatUint(adv.Deliveries, 10))
	m.Header.Set(erasurev1.HeaderDeadSource, erasurev1.TasksStream+":"+strconv.FormatUint(adv.StreamSeq, 10))
	if _, err := q.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("store dead letter: %w", err)
	}
	if task.GetJobId() != "" {
		_, err := q.svc.ApplyReport(ctx, &erasurev1.TaskReport{
			JobId: task.GetJobId(), AccountId: task.GetAccountId(), Category: task.GetCategory(), Stage: task.GetStage(),
			Generation: task.GetGeneration(), Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_FAILED,
			ErrorCode: "max_deliveries", ErrorMessage: reason, Attempt: uint32(adv.Deliveries),
			FinishedAt: timestamppb.Now(), WorkerId: "coordinator",
		})
		if err != nil && !errors.Is(err, jobs.ErrNotFound) && !errors.Is(err, jobs.ErrUnknownTask) {
			return fmt.Errorf("fail task of job %s: %w", task.GetJobId(), err)
		}
	}
	// The work queue would otherwise keep the message for ever.
	if err := tasks.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove dead task message %d: %w", adv.StreamSeq, err)
	}
	q.advised.Inc()
	log.Error("task dead-lettered after its deliveries ran out", zap.String("job_id", task.GetJobId()), zap.String("category", task.GetCategory()), zap.Uint64("deliveries", adv.Deliveries))
	return nil
}

// Letter is one dead letter as SREs see it: ids, never data.
type Letter struct {
	Seq        uint64    `json:"seq"`
	Category   string    `json:"category"`
	JobID      string    `json:"job_id"`
	AccountID  string    `json:"account_id"`
	Stage      string    `json:"stage"`
	Generation uint32    `json:"generation"`
	Code       string    `json:"code"`
	Reason     string    `json:"reason"`
	Attempts   int       `json:"attempts"`
	Source     string    `json:"source"`
	StoredAt   time.Time `json:"stored_at"`
}

// ErrNotFound means there is no dead letter with that sequence.
var ErrNotFound = errors.New("no such dead letter")

func (q *Queue) stream(ctx context.Context) (jetstream.Stream, error) {
	st, err := q.js.Stream(ctx, erasurev1.DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("look up the dead-letter stream: %w", err)
	}
	return st, nil
}

// List returns up to limit dead letters, oldest first, of one category or
// all ("").
func (q *Queue) List(ctx context.Context, category string, limit int) ([]Letter, int, error) {
	st, err := q.stream(ctx)
	if err != nil {
		return nil, 0, err
	}
	filter := erasurev1.DeadLetterSubjectPrefix + ">"
	if category != "" {
		filter = erasurev1.DeadLetterSubject(category)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, 0, fmt.Errorf("read dead letters: %w", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, 0, fmt.Errorf("count dead letters: %w", err)
	}
	total := 0
	for _, n := range info.State.Subjects {
		total += int(n)
	}
	var out []Letter
	for len(out) < limit && len(out) < total {
		batch, err := cons.FetchNoWait(min(limit-len(out), 256))
		if err != nil {
			return nil, 0, fmt.Errorf("read dead letters: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			out = append(out, letterOf(meta.Sequence.Stream, m.Subject(), m.Headers(), m.Data(), meta.Timestamp))
		}
		if n == 0 {
			break
		}
	}
	return out, total, nil
}

// Get returns one dead letter.
func (q *Queue) Get(ctx context.Context, seq uint64) (Letter, error) {
	st, err := q.stream(ctx)
	if err != nil {
		return Letter{}, err
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Letter{}, fmt.Errorf("dead letter %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	return letterOf(raw.Sequence, raw.Subject, raw.Header, raw.Data, raw.Time), nil
}

func letterOf(seq uint64, subject string, h nats.Header, data []byte, at time.Time) Letter {
	var task erasurev1.ErasureTask
	_ = proto.Unmarshal(data, &task) // an undecodable one still lists, with its headers
	attempts, _ := strconv.Atoi(h.Get(erasurev1.HeaderDeadAttempts))
	return Letter{
		Seq: seq, Category: strings.TrimPrefix(subject, erasurev1.DeadLetterSubjectPrefix),
		JobID: task.GetJobId(), AccountID: task.GetAccountId(), Stage: task.GetStage(), Generation: task.GetGeneration(),
		Code: h.Get(erasurev1.HeaderDeadCode), Reason: h.Get(erasurev1.HeaderDeadReason), Attempts: attempts,
		Source: h.Get(erasurev1.HeaderDeadSource), StoredAt: at.UTC(),
	}
}

// ReplayResult says what a dead-letter replay did.
type ReplayResult struct {
	Letter Letter `json:"letter"`
	// Result is "replayed" (the task runs again) or "resolved" (the task
	// had already succeeded, e.g. through a job replay; nothing to run).
	Result string    `json:"result"`
	Job    *jobs.Job `json:"-"`
}

// Replay runs the dead letter's task again through the job's replay, then
// removes the dead letter. A letter whose task has meanwhile succeeded is
// removed as resolved.
func (q *Queue) Replay(ctx context.Context, seq uint64, actor, reason string) (ReplayResult, error) {
	l, err := q.Get(ctx, seq)
	if err != nil {
		return ReplayResult{}, err
	}
	if l.JobID == "" {
		return ReplayResult{}, fmt.Errorf("%w: dead letter %d holds no decodable task; inspect it and remove it by hand", jobs.ErrConflict, seq)
	}
	res := ReplayResult{Letter: l, Result: "resolved"}
	j, err := q.svc.Get(ctx, l.JobID)
	if err != nil {
		return ReplayResult{}, err
	}
	t, err := j.Task(jobs.TaskKey{Category: l.Category, Stage: l.Stage})
	if err != nil {
		return ReplayResult{}, err
	}
	res.Job = j
	// Only a task that is still failed runs again; one that succeeded or
	// is already running again (a job replay got there first) is resolved.
	if t.Status == jobs.TaskFailed {
		j, _, err = q.svc.Replay(ctx, l.JobID, jobs.ReplaySelector{Category: l.Category, Stage: l.Stage}, actor, reason)
		if err != nil {
			return ReplayResult{}, err
		}
		res.Job, res.Result = j, "replayed"
	}
	st, err := q.stream(ctx)
	if err != nil {
		return ReplayResult{}, err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return ReplayResult{}, fmt.Errorf("remove replayed dead letter %d: %w", seq, err)
	}
	q.replayed.WithLabelValues(l.Category, res.Result).Inc()
	return res, nil
}
