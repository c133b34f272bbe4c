// Package ingress turns the dashboard's AccountDeleted events into erasure
// jobs. An event is acked only after its job exists and its creation is in
// the audit trail. An event that cannot be decoded or is invalid is copied,
// with the reason, to the rejected stream for inspection and terminated:
// it is never dropped silently and never blocks the events behind it.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/consume"
	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// MaxEventBytes bounds an AccountDeleted message; larger ones are rejected.
const MaxEventBytes = 64 << 10

// Requester creates erasure jobs.
type Requester interface {
	RequestErasure(ctx context.Context, req jobs.Request) (*jobs.Job, bool, error)
}

// Publisher publishes rejected events.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Consumer reads dashboard events.
type Consumer struct {
	cons     jetstream.Consumer
	js       Publisher
	req      Requester
	log      *zap.Logger
	rejected *prometheus.CounterVec
	accepted prometheus.Counter
}

// New returns a consumer of dashboard events; reg may be nil.
func New(cons jetstream.Consumer, js Publisher, req Requester, log *zap.Logger, reg prometheus.Registerer) *Consumer {
	c := &Consumer{
		cons: cons, js: js, req: req, log: log,
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_ingress_rejected_total",
			Help: "Dashboard events rejected to the rejected stream, by reason (undecodable, invalid, oversized).",
		}, []string{"reason"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lethe_ingress_accepted_total",
			Help: "Dashboard events turned into a job (new or existing).",
		}),
	}
	if reg != nil {
		reg.MustRegister(c.rejected, c.accepted)
	}
	return c
}

// concurrency bounds the events handled at once. Each waits mostly for
// its JOB_CREATED event's turn in the audit chain before it acks (the job
// is dispatched before that); too few, and under load new events wait
// for a free handler before their job exists.
const concurrency = 128

// Run consumes events until ctx is cancelled.
func (c *Consumer) Run(ctx context.Context) error {
	return consume.Run(ctx, c.cons, c.handle, consume.Options{Concurrency: concurrency}, c.log)
}

// Decode decodes an AccountDeleted body: protojson when contentType is
// application/json, protobuf otherwise. Unknown JSON fields are errors.
func Decode(data []byte, contentType string) (*accountsv1.AccountDeleted, error) {
	var ev accountsv1.AccountDeleted
	if len(data) > MaxEventBytes {
		return nil, fmt.Errorf("event of %d bytes exceeds %d", len(data), MaxEventBytes)
	}
	if contentType == erasurev1.ContentTypeJSON {
		if err := protojson.Unmarshal(data, &ev); err != nil {
			// protojson's message quotes the offending field name or value,
			// which in a dashboard event can be personal data ("invalid
			// google.protobuf.Timestamp value \"alice@example.com\""): keep
			// only where it is.
			return nil, fmt.Errorf("decode json event: not a protojson AccountDeleted%s", jsonPosition(err))
		}
		return &ev, nil
	}
	if err := proto.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("decode protobuf event: %w", err)
	}
	return &ev, nil
}

// jsonPositionPattern finds protojson's "(line 1:23)" in its errors.
var jsonPositionPattern = regexp.MustCompile(`\(line \d+:\d+\)`)

// jsonPosition is " at line L:C" from a protojson error, or "".
func jsonPosition(err error) string {
	if p := jsonPositionPattern.FindString(err.Error()); p != "" {
		return " at " + strings.Trim(p, "()")
	}
	return ""
}

// RequestOf turns an event into an erasure request, with defaults for the
// optional fields.
func RequestOf(ev *accountsv1.AccountDeleted) jobs.Request {
	req := jobs.Request{
		AccountID:   ev.GetAccountId(),
		Origin:      jobs.OriginDashboard,
		RequestedBy: ev.GetRequestedBy(),
		Reason:      ev.GetReason(),
		EventID:     ev.GetEventId(),
	}
	if req.RequestedBy == "" {
		req.RequestedBy = "dashboard"
	}
	if req.Reason == "" {
		req.Reason = "account deleted in the dashboard"
	}
	return req
}

func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		c.log.Error("event without jetstream metadata", zap.Error(err))
		return
	}
	log := c.log.With(zap.Uint64("stream_seq", meta.Sequence.Stream), zap.Uint64("delivery", meta.NumDelivered))
	ev, err := Decode(msg.Data(), msg.Headers().Get(erasurev1.HeaderContentType))
	if err != nil {
		reason := "undecodable"
		if len(msg.Data()) > MaxEventBytes {
			reason = "oversized"
		}
		c.reject(ctx, msg, meta, reason, err, log)
		return
	}
	req := RequestOf(ev)
	j, created, err := c.req.RequestErasure(ctx, req)
	switch {
	case errors.Is(err, jobs.ErrInvalid):
		c.reject(ctx, msg, meta, "invalid", err, log)
	case err != nil:
		delay := min(time.Duration(meta.NumDelivered)*time.Second, 30*time.Second)
		_ = msg.NakWithDelay(delay)
		log.Warn("event not accepted yet; retrying", zap.Duration("retry_in", delay), zap.Error(err))
	default:
		if err := msg.Ack(); err != nil {
			log.Warn("event ack failed; the redelivery maps to the same job", zap.Error(err))
		}
		c.accepted.Inc()
		log.Info("dashboard event accepted", zap.String("job_id", j.ID), zap.String("account_id", j.AccountID), zap.Bool("created", created))
	}
}

// reject copies the event to the rejected stream with the reason, then
// terminates it. If the copy cannot be stored the event is retried rather
// than lost.
func (c *Consumer) reject(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string, cause error, log *zap.Logger) {
	m := nats.NewMsg(erasurev1.RejectedIngressSubject)
	m.Data = msg.Data()
	if len(m.Data) > MaxEventBytes {
		m.Data = m.Data[:MaxEventBytes]
	}
	m.Header.Set(erasurev1.HeaderRejectReason, reason+": "+cause.Error())
	m.Header.Set(erasurev1.HeaderRejectSource, meta.Stream+":"+strconv.FormatUint(meta.Sequence.Stream, 10))
	if ct := msg.Headers().Get(erasurev1.HeaderContentType); ct != "" {
		m.Header.Set(erasurev1.HeaderContentType, ct)
	}
	m.Header.Set(jetstream.MsgIDHeader, "rejected:"+meta.Stream+":"+strconv.FormatUint(meta.Sequence.Stream, 10))
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		_ = msg.NakWithDelay(5 * time.Second)
		log.Warn("could not keep rejected event; retrying", zap.String("reason", reason), zap.Error(err))
		return
	}
	_ = msg.Term()
	c.rejected.WithLabelValues(reason).Inc()
	// The cause stays out of the log: a decoder's message can quote the
	// payload. It is kept with the event in the rejected stream.
	log.Error("dashboard event rejected", zap.String("reason", reason), zap.Int("bytes", len(msg.Data())))
}
