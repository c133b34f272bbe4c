// Package topology declares Lethe's JetStream streams and consumers and
// creates or updates them idempotently. Every service calls Ensure at
// start-up, so the broker always matches the version of the code that runs;
// docs/jetstream.md explains each setting.
package topology

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// Settings are the knobs of the topology. Zero values take the defaults of
// DefaultSettings; tests shorten the timings.
type Settings struct {
	// Replicas of every stream: 1 on one server, 3 on a cluster.
	Replicas int
	// Storage of every stream. The default is file storage.
	Storage jetstream.StorageType
	// DuplicateWindow is how long a Nats-Msg-Id is remembered. It must cover
	// the longest time between a publish and its retry after a crash.
	DuplicateWindow time.Duration
	// TaskAckWait is how long a worker may hold a task without acking or
	// sending an InProgress heartbeat before it is redelivered.
	TaskAckWait time.Duration
	// TaskMaxDeliver is how often a task is delivered before the worker gives
	// up on it (the worker reports the failure on the last delivery).
	TaskMaxDeliver int
	// TaskBackOff spaces redeliveries after an ack-wait timeout (a worker that
	// died mid-task). Its length must not exceed TaskMaxDeliver.
	TaskBackOff []time.Duration
	// ReportAckWait is how long the coordinator may hold a report.
	ReportAckWait time.Duration
	// IngressAckWait is how long the coordinator may hold a dashboard event.
	IngressAckWait time.Duration
	// ReportRetention is how long reports, dashboard events and rejected
	// events stay in their streams after they were handled.
	ReportRetention time.Duration
	// Categories whose worker consumers to create.
	Categories []string
}

// DefaultSettings returns the production settings documented in
// docs/jetstream.md.
func DefaultSettings() Settings {
	return Settings{
		Replicas:        1,
		Storage:         jetstream.FileStorage,
		DuplicateWindow: 10 * time.Minute,
		TaskAckWait:     30 * time.Second,
		TaskMaxDeliver:  8,
		// No BackOff: with one set, nats-server 2.15.3 offsets a nak'ed
		// message by AckWait but expires it by the BackOff step of its
		// delivery count, so a worker's NakWithDelay(2s) came back after
		// 32s (measured; docs/jetstream.md). The workers space their own
		// retries; a dead worker's task comes back after AckWait.
		TaskBackOff:     []time.Duration{},
		ReportAckWait:   30 * time.Second,
		IngressAckWait:  30 * time.Second,
		ReportRetention: 30 * 24 * time.Hour,
		Categories: []string{
			erasurev1.CategoryContacts,
			erasurev1.CategoryLogs,
			erasurev1.CategoryBilling,
			erasurev1.CategoryBackups,
		},
	}
}

// ErrInvalidSettings is wrapped by Validate's errors.
var ErrInvalidSettings = errors.New("invalid topology settings")

// withDefaults fills zero fields from DefaultSettings.
func (s Settings) withDefaults() Settings {
	d := DefaultSettings()
	if s.Replicas == 0 {
		s.Replicas = d.Replicas
	}
	if s.DuplicateWindow == 0 {
		s.DuplicateWindow = d.DuplicateWindow
	}
	if s.TaskAckWait == 0 {
		s.TaskAckWait = d.TaskAckWait
	}
	if s.TaskMaxDeliver == 0 {
		s.TaskMaxDeliver = d.TaskMaxDeliver
	}
	if s.TaskBackOff == nil {
		s.TaskBackOff = d.TaskBackOff
	}
	if s.ReportAckWait == 0 {
		s.ReportAckWait = d.ReportAckWait
	}
	if s.IngressAckWait == 0 {
		s.IngressAckWait = d.IngressAckWait
	}
	if s.ReportRetention == 0 {
		s.ReportRetention = d.ReportRetention
	}
	if s.Categories == nil {
		s.Categories = d.Categories
	}
	return s
}

// Validate reports the first setting that cannot work.
func (s Settings) Validate() error {
	s = s.withDefaults()
	switch {
	case s.Replicas != 1 && s.Replicas != 3 && s.Replicas != 5:
		return fmt.Errorf("%w: replicas must be 1, 3 or 5, got %d", ErrInvalidSettings, s.Replicas)
	case s.TaskMaxDeliver < 1:
		return fmt.Errorf("%w: task max deliver must be at least 1", ErrInvalidSettings)
	case len(s.TaskBackOff) > s.TaskMaxDeliver:
		return fmt.Errorf("%w: %d task backoff steps exceed max deliver %d", ErrInvalidSettings, len(s.TaskBackOff), s.TaskMaxDeliver)
	case len(s.Categories) == 0:
		return fmt.Errorf("%w: no categories", ErrInvalidSettings)
	}
	for _, c := range s.Categories {
		if !ValidCategory(c) {
			return fmt.Errorf("%w: category %q must be lower-case letters only", ErrInvalidSettings, c)
		}
	}
	return nil
}

// ValidCategory reports whether c can be used as a subject token and a
// consumer name.
func ValidCategory(c string) bool {
	if c == "" || len(c) > 32 {
		return false
	}
	for _, r := range c {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}

// Streams returns the stream configurations for s.
func (s Settings) Streams() []jetstream.StreamConfig {
	s = s.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        erasurev1.TasksStream,
			Description: "Erasure tasks, one subject per category; each message is removed once a worker acks it.",
			Subjects:    []string{erasurev1.TaskSubjectPrefix + ">"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     s.Storage,
			Replicas:    s.Replicas,
			Duplicates:  s.DuplicateWindow,
			Discard:     jetstream.DiscardNew,
		},
		{
			Name:        erasurev1.ReportsStream,
			Description: "Workers' task reports, kept for inspection after the coordinator applied them.",
			Subjects:    []string{erasurev1.ReportSubjectPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     s.Storage,
			Replicas:    s.Replicas,
			Duplicates:  s.DuplicateWindow,
			MaxAge:      s.ReportRetention,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        erasurev1.LifecycleStream,
			Description: "Append-only audit trail of every job transition; the log Redis state is rebuilt from.",
			Subjects:    []string{erasurev1.LifecycleSubjectPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     s.Storage,
			Replicas:    s.Replicas,
			Duplicates:  s.DuplicateWindow,
			// No MaxAge: the trail must outlive the longest legal retention.
			Discard:     jetstream.DiscardNew,
			DenyDelete:  true,
			DenyPurge:   true,
			AllowRollup: false,
			// The audit chain's writer appends a batch of events at the
			// positions it signed them for, or none (docs/jetstream.md,
			// "The audit chain").
			AllowAtomicPublish: true,
		},
		{
			Name:        erasurev1.AccountsStream,
			Description: "The dashboard's account-deletion events.",
			Subjects:    []string{erasurev1.AccountDeletedSubject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     s.Storage,
			Replicas:    s.Replicas,
			Duplicates:  s.DuplicateWindow,
			MaxAge:      s.ReportRetention,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        erasurev1.DeadLetterStream,
			Description: "Tasks that failed for good or ran out of deliveries, with the reason; kept until replayed or drained.",
			Subjects:    []string{erasurev1.DeadLetterSubjectPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     s.Storage,
			Replicas:    s.Replicas,
			Duplicates:  s.DuplicateWindow,
			Discard:     jetstream.DiscardNew,
		},
		{
			Name:        erasurev1.AdvisoryStream,
			Description: "Max-deliveries advisories of the task consumers, so that no task dead-letters silently.",
			Subjects:    []string{erasurev1.MaxDeliveriesAdvisoryPrefix + erasurev1.TasksStream + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     s.Storage,
			Replicas:    s.Replicas,
			MaxAge:      s.ReportRetention,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        erasurev1.RejectedStream,
			Description: "Inbound events that could not be decoded, kept for inspection.",
			Subjects:    []string{erasurev1.RejectedIngressSubject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     s.Storage,
			Replicas:    s.Replicas,
			MaxAge:      s.ReportRetention,
			Discard:     jetstream.DiscardOld,
		},
	}
}

// WorkerConsumer returns the durable consumer configuration of a category.
func (s Settings) WorkerConsumer(category string) jetstream.ConsumerConfig {
	s = s.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       erasurev1.WorkerConsumer(category),
		Description:   "Shared by every replica of the " + category + " worker.",
		FilterSubject: erasurev1.TaskSubject(category),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.TaskAckWait,
		MaxDeliver:    s.TaskMaxDeliver,
		BackOff:       s.TaskBackOff,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      s.Replicas,
		MaxAckPending: 1000,
	}
}

// ReportsConsumer returns the coordinator's durable consumer of reports. It
// never gives up on a report: a report that cannot be applied yet (Redis
// down) is retried until it can.
func (s Settings) ReportsConsumer() jetstream.ConsumerConfig {
	s = s.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       erasurev1.ReportsConsumer,
		Description:   "Shared by every coordinator replica.",
		FilterSubject: erasurev1.ReportSubjectPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.ReportAckWait,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      s.Replicas,
		MaxAckPending: 1000,
	}
}

// IngressConsumer returns the coordinator's durable consumer of dashboard
// events. Like reports, an event is retried until it is accepted or
// rejected for good.
func (s Settings) IngressConsumer() jetstream.ConsumerConfig {
	s = s.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       erasurev1.IngressConsumer,
		Description:   "Shared by every coordinator replica.",
		FilterSubject: erasurev1.AccountDeletedSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.IngressAckWait,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      s.Replicas,
		MaxAckPending: 1000,
	}
}

// AdvisoryConsumer returns the coordinator's durable consumer of
// max-deliveries advisories.
func (s Settings) AdvisoryConsumer() jetstream.ConsumerConfig {
	s = s.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       erasurev1.AdvisoryConsumer,
		Description:   "Shared by every coordinator replica.",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.ReportAckWait,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      s.Replicas,
		MaxAckPending: 100,
	}
}

// Manager is the part of jetstream.JetStream that Ensure needs.
type Manager interface {
	CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
	CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
}

var _ Manager = (jetstream.JetStream)(nil)

// Ensure creates or updates every stream, the coordinator's consumers and
// one worker consumer per category. It is safe to call concurrently from
// several processes and on every start. On a cluster that cannot place a
// replicated stream or consumer yet (its servers just started: services
// started together with it would otherwise exit), it tries again until
// ctx ends.
func Ensure(ctx context.Context, js Manager, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	s = s.withDefaults()
	for _, cfg := range s.Streams() {
		if err := whenPlaced(ctx, func() error {
			_, err := js.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
		}
	}
	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{
		{erasurev1.ReportsStream, s.ReportsConsumer()},
		{erasurev1.AccountsStream, s.IngressConsumer()},
		{erasurev1.AdvisoryStream, s.AdvisoryConsumer()},
	}
	for _, c := range s.Categories {
		consumers = append(consumers, struct {
			stream string
			cfg    jetstream.ConsumerConfig
		}{erasurev1.TasksStream, s.WorkerConsumer(c)})
	}
	for _, c := range consumers {
		if err := whenPlaced(ctx, func() error {
			_, err := js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg)
			return err
		}); err != nil {
			return fmt.Errorf("create or update consumer %s on %s: %w", c.cfg.Durable, c.stream, err)
		}
	}
	return nil
}

// errCodeNoSuitablePeers is the server's answer when it cannot choose
// servers for a replicated asset: "no suitable peers for placement". A
// new cluster gives it right after start-up, until every server's first
// statistics reached the meta leader; every server may answer /healthz
// before that (seen in the e2e cluster test on a loaded machine). A server
// that was heard from and then went down still counts as a peer.
const errCodeNoSuitablePeers jetstream.ErrorCode = 10005

// whenPlaced runs create until the cluster can place what it creates,
// every 250 ms, and returns its last error when ctx ends or when it fails
// for another reason.
func whenPlaced(ctx context.Context, create func() error) error {
	for {
		err := create()
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeNoSuitablePeers {
			return err
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retried until the deadline: have as many NATS servers as the stream replicas ask for joined the cluster?)", err)
		case <-t.C:
		}
	}
}
