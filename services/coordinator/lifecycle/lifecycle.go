// Package lifecycle appends job transitions to the lifecycle stream: the
// append-only audit trail that says who did what, when and why, and from
// which the Redis projection can be rebuilt. Event ids are deterministic per
// transition and double as Nats-Msg-Id, so recording the same transition
// twice within the stream's duplicate window stores it once. With an audit
// key (WithAuditKey) every event is chained into the tamper-evident audit
// trail that package audit verifies (chain.go).
package lifecycle

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// Publisher is the part of JetStream the recorder needs.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Recorder writes lifecycle events. It is safe for concurrent use.
type Recorder struct {
	js       Publisher
	key      *audit.Key
	stream   string
	maxBatch int
	chain    *chain // nil without an audit key
}

// NewRecorder returns a recorder publishing through js. Without
// WithAuditKey its events are unsigned (see WithAuditKey).
func NewRecorder(js Publisher, opts ...Option) *Recorder {
	r := &Recorder{js: js, stream: defaultStream, maxBatch: defaultMaxBatch}
	for _, o := range opts {
		o(r)
	}
	if r.key != nil {
		r.chain = newChain(js, r.key, r.stream, r.maxBatch)
	}
	return r
}

// ChainStats counts what the recorder appended to the audit chain (zero
// without an audit key).
func (r *Recorder) ChainStats() ChainStats {
	if r.chain == nil {
		return ChainStats{}
	}
	return r.chain.stats()
}

// Record appends ev, retrying briefly; it returns only once the stream
// has stored the event (or it was a duplicate), or with the last error.
// With an audit key the event is signed into the chain, batched with the
// events other goroutines record meanwhile.
func (r *Recorder) Record(ctx context.Context, ev *erasurev1.LifecycleEvent) error {
	data, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode lifecycle event %s: %w", ev.GetEventId(), err)
	}
	if r.chain != nil {
		if err := r.chain.record(ctx, erasurev1.LifecycleSubject(ev.GetJobId()), ev.GetEventId(), data); err != nil {
			return fmt.Errorf("record %s event of job %s: %w", ev.GetType(), ev.GetJobId(), err)
		}
		return nil
	}
	m := nats.NewMsg(erasurev1.LifecycleSubject(ev.GetJobId()))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, ev.GetEventId())
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxElapsedTime = 0
	err = backoff.Retry(func() error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := r.js.PublishMsg(pctx, m)
		return err
	}, backoff.WithContext(backoff.WithMaxRetries(bo, 5), ctx))
	if err != nil {
		return fmt.Errorf("record %s event of job %s: %w", ev.GetType(), ev.GetJobId(), err)
	}
	return nil
}

// Created is the event of a new job.
func Created(j *jobs.Job) *erasurev1.LifecycleEvent {
	ev := base(j, j.ID+":created", erasurev1.EventType_EVENT_TYPE_JOB_CREATED, j.CreatedAt)
	ev.Actor = j.RequestedBy
	ev.Reason = j.Reason
	ev.Deadline = timestamppb.New(j.Deadline)
	ev.SourceEventId = j.EventID
	setPolicy(ev, j)
	for _, t := range j.Tasks {
		ref := &erasurev1.TaskRef{Category: t.Category, Stage: t.Stage, Action: t.Action, After: durationpb.New(t.DueAt.Sub(j.CreatedAt))}
		setTaskPolicy(ref, &t)
		for _, d := range t.DependsOn {
			ref.DependsOn = append(ref.DependsOn, d.String())
		}
		ev.Tasks = append(ev.Tasks, ref)
	}
	return ev
}

// Dispatched is the event of a task published to its worker.
func Dispatched(j *jobs.Job, t *jobs.Task, at time.Time) *erasurev1.LifecycleEvent {
	ev := base(j, taskEventID(j, t, "dispatched"), erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED, at)
	ev.Actor = "coordinator"
	setTask(ev, t)
	return ev
}

// Replayed is the event of a task scheduled again as a new generation.
func Replayed(j *jobs.Job, t *jobs.Task, actor, reason string, at time.Time) *erasurev1.LifecycleEvent {
	ev := base(j, taskEventID(j, t, "replayed"), erasurev1.EventType_EVENT_TYPE_TASK_REPLAYED, at)
	ev.Actor = actor
	ev.Reason = reason
	ev.DueAt = timestamppb.New(t.DueAt)
	setTask(ev, t)
	return ev
}

// Redispatched is the event of reconciliation publishing a dispatched
// task again.
func Redispatched(j *jobs.Job, t *jobs.Task, at time.Time) *erasurev1.LifecycleEvent {
	ev := base(j, taskEventID(j, t, "redispatched:"+strconv.Itoa(t.Redispatches)), erasurev1.EventType_EVENT_TYPE_TASK_REDISPATCHED, at)
	ev.Actor = "coordinator:reconcile"
	ev.Reason = "no report came and the task message was gone from the work queue"
	setTask(ev, t)
	return ev
}

// Retrying is the event of one failed delivery that will be retried.
func Retrying(j *jobs.Job, t *jobs.Task, a jobs.Attempt, workerID string) *erasurev1.LifecycleEvent {
	ev := base(j, taskEventID(j, t, "retrying:"+strconv.FormatUint(uint64(a.Attempt), 10)), erasurev1.EventType_EVENT_TYPE_TASK_RETRYING, a.At)
	ev.Actor = "worker:" + t.Category
	if workerID != "" {
		ev.Actor += "/" + workerID
	}
	setTask(ev, t)
	ev.Attempt = a.Attempt
	ev.Error = a.Error
	ev.ErrorCode = a.ErrorCode
	return ev
}

// TaskFinished is the event of a task's reported outcome.
func TaskFinished(j *jobs.Job, t *jobs.Task, workerID string) *erasurev1.LifecycleEvent {
	typ, suffix := erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED, "succeeded"
	if t.Status == jobs.TaskFailed {
		typ, suffix = erasurev1.EventType_EVENT_TYPE_TASK_FAILED, "failed"
	}
	at := j.UpdatedAt
	if t.FinishedAt != nil {
		at = *t.FinishedAt
	}
	ev := base(j, taskEventID(j, t, suffix), typ, at)
	ev.Actor = "worker:" + t.Category
	if workerID != "" {
		ev.Actor += "/" + workerID
	}
	setTask(ev, t)
	ev.ItemsPurged = t.ItemsPurged
	ev.Error = t.Error
	ev.ErrorCode = t.ErrorCode
	ev.Attempt = t.Attempts
	if t.Status == jobs.TaskSucceeded {
		ev.Anchors = anchors(j)
	}
	return ev
}

// Finished is the event of a job reaching completed or failed.
func Finished(j *jobs.Job) *erasurev1.LifecycleEvent {
	typ := erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED
	if j.Status == jobs.StatusFailed {
		typ = erasurev1.EventType_EVENT_TYPE_JOB_FAILED
	}
	at := j.UpdatedAt
	if j.FinishedAt != nil {
		at = *j.FinishedAt
	}
	// The generation sum makes a job that ends again after a replay a new
	// event rather than a duplicate.
	id := j.ID + ":" + string(j.Status) + ":" + strconv.FormatUint(j.GenerationSum(), 10)
	ev := base(j, id, typ, at)
	ev.Actor = "coordinator"
	ev.Error = j.Error
	ev.ItemsPurged = j.ItemsPurged()
	return ev
}

func base(j *jobs.Job, id string, typ erasurev1.EventType, at time.Time) *erasurev1.LifecycleEvent {
	return &erasurev1.LifecycleEvent{
		EventId:   id,
		Type:      typ,
		JobId:     j.ID,
		AccountId: j.AccountID,
		At:        timestamppb.New(at),
		Origin:    string(j.Origin),
	}
}

func setTask(ev *erasurev1.LifecycleEvent, t *jobs.Task) {
	ev.Category = t.Category
	ev.Stage = t.Stage
	ev.Generation = t.Generation
}

func taskEventID(j *jobs.Job, t *jobs.Task, what string) string {
	return j.ID + ":" + t.Category + ":" + t.Stage + ":" + strconv.FormatUint(uint64(t.Generation), 10) + ":" + what
}
