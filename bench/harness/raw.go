package harness

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RawCeiling is what the nats-server alone does in the same storage
// configuration, measured the way `nats bench js pub` and `nats bench js
// consume` (natscli) measure it: one client publishes Msgs messages of Size
// bytes to a file-storage stream asynchronously, Batch at a time, waiting
// for all their acks before the next batch; then one client reads them back
// through a durable pull consumer, Batch buffered, acking each explicitly.
type RawCeiling struct {
	Msgs  int `json:"msgs"`
	Size  int `json:"size_bytes"`
	Batch int `json:"batch"`
	// PubPerSec is the raw messages per second of the ratio.
	PubSeconds     float64 `json:"pub_seconds"`
	PubPerSec      float64 `json:"pub_msgs_per_sec"`
	ConsumeSeconds float64 `json:"consume_seconds"`
	ConsumePerSec  float64 `json:"consume_msgs_per_sec"`
}

// Names of the raw stream, apart from Lethe's.
const (
	rawStream   = "LETHE_BENCH_RAW"
	rawSubject  = "lethe.bench.raw"
	rawConsumer = "lethe-bench"
)

// measureRaw runs the raw publish and consume on the server at url and
// deletes its stream afterwards.
func measureRaw(ctx context.Context, url string, msgs, size, batch int) (RawCeiling, error) {
	res := RawCeiling{Msgs: msgs, Size: size, Batch: batch}
	nc, err := nats.Connect(url, nats.Name("lethe-bench-raw"))
	if err != nil {
		return res, fmt.Errorf("connect to nats for the raw ceiling: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(batch))
	if err != nil {
		return res, fmt.Errorf("create jetstream context: %w", err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: rawStream, Subjects: []string{rawSubject}, Storage: jetstream.FileStorage,
		Replicas: 1, MaxBytes: 1 << 30,
	})
	if err != nil {
		return res, fmt.Errorf("create the raw stream: %w", err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), rawStream) }()

	payload := make([]byte, size)
	futures := make([]jetstream.PubAckFuture, 0, batch)
	start := time.Now()
	for sent := 0; sent < msgs; {
		n := min(batch, msgs-sent)
		futures = futures[:0]
		for range n {
			f, err := js.PublishAsync(rawSubject, payload)
			if err != nil {
				return res, fmt.Errorf("raw publish: %w", err)
			}
			futures = append(futures, f)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Minute):
			return res, errors.New("raw publish: no acks for a minute; read the nats-server log")
		}
		for _, f := range futures {
			select {
			case err := <-f.Err():
				return res, fmt.Errorf("raw publish: %w", err)
			default:
			}
		}
		sent += n
	}
	res.PubSeconds = time.Since(start).Seconds()
	res.PubPerSec = float64(msgs) / res.PubSeconds

	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: rawConsumer, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return res, fmt.Errorf("create the raw consumer: %w", err)
	}
	var got atomic.Int64
	done := make(chan struct{})
	start = time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(msgs) {
			close(done)
		}
	}, jetstream.PullMaxMessages(batch))
	if err != nil {
		return res, fmt.Errorf("raw consume: %w", err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(5 * time.Minute):
		return res, fmt.Errorf("raw consume: %d of %d messages after 5 minutes", got.Load(), msgs)
	}
	res.ConsumeSeconds = time.Since(start).Seconds()
	res.ConsumePerSec = float64(msgs) / res.ConsumeSeconds
	return res, nil
}
