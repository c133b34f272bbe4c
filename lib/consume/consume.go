// Package consume runs the pull loop every Lethe consumer shares: a durable
// JetStream consumer read with a short pull expiry and heartbeat (so that a
// stalled pull, nats.go#1622, costs about a second, not thirty), handled by a
// bounded number of goroutines, and drained in order on shutdown. The
// handler decides ack, nak or term; this package only schedules.
package consume

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Handler handles one message and must ack, nak or term it. ctx is
// cancelled only when the drain timeout expires, so that running work
// can finish during a graceful shutdown.
type Handler func(ctx context.Context, msg jetstream.Msg)

// Options tune a Loop. Zero values take the defaults.
type Options struct {
	// Concurrency bounds the handlers running at once; default 1.
	Concurrency int
	// PullExpiry and PullHeartbeat default to 5s and 500ms.
	PullExpiry    time.Duration
	PullHeartbeat time.Duration
	// DrainTimeout bounds how long running handlers may take after
	// shutdown starts; default 30s.
	DrainTimeout time.Duration
}

// Run consumes from cons until ctx is cancelled. Messages fetched but not
// yet started when shutdown begins are nak'ed so that another replica
// takes them at once. Run returns after every handler has returned.
func Run(ctx context.Context, cons jetstream.Consumer, h Handler, opts Options, log *zap.Logger) error {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.PullExpiry == 0 {
		opts.PullExpiry = 5 * time.Second
	}
	if opts.PullHeartbeat == 0 {
		opts.PullHeartbeat = 500 * time.Millisecond
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, opts.Concurrency)
		stopping = make(chan struct{})
	)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case <-stopping:
			_ = msg.Nak()
			return
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h(workCtx, msg)
		}()
	},
		jetstream.PullMaxMessages(opts.Concurrency),
		jetstream.PullExpiry(opts.PullExpiry),
		jetstream.PullHeartbeat(opts.PullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn("consumer error", zap.Error(err))
		}),
	)
	if err != nil {
		return fmt.Errorf("start consuming: %w", err)
	}
	<-ctx.Done()
	close(stopping)
	cc.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(opts.DrainTimeout):
		log.Warn("drain timeout: cancelling running handlers", zap.Duration("drain_timeout", opts.DrainTimeout))
		cancelWork()
		<-done
	}
	return nil
}
