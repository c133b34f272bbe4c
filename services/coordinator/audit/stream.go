package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// Source is the part of JetStream a walk reads.
type Source interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

var _ Source = (jetstream.JetStream)(nil)

// WalkOptions choose what a walk checks.
type WalkOptions struct {
	// Stream is the stream to check: the lifecycle stream by default, or a
	// copy of it (a mirror, a restored backup) under any name.
	Stream string
	// FromSeq is the first stream sequence to check; 0 or anything up to
	// the stream's first sequence checks from the start. From the middle,
	// the message before FromSeq is read to check the first entry's link.
	FromSeq uint64
	// Limit stops the walk after that many entries (0: no limit); the
	// report then says where to go on (NextSeq).
	Limit uint64
	// ProgressEvery is how many entries pass between two progress calls;
	// default 10000.
	ProgressEvery uint64
}

// Progress is how far a walk got.
type Progress struct {
	Stream string `json:"stream"`
	// Checked entries so far; Seq is the last one's stream sequence, of
	// LastSeq (the stream's last when the walk started).
	Checked  uint64 `json:"checked"`
	Seq      uint64 `json:"seq"`
	LastSeq  uint64 `json:"last_seq"`
	Problems uint64 `json:"problems"`
}

// Walk checks the chain of a stream from opts.FromSeq to its last message
// as of the start (entries appended meanwhile are left to the next check),
// calling progress, if not nil, every opts.ProgressEvery entries and at the
// end. It returns an error, with the report so far, only when the stream
// cannot be read; what is wrong with the trail is in the report.
func Walk(ctx context.Context, src Source, keys *KeyRing, opts WalkOptions, progress func(Progress)) (Report, error) {
	if opts.Stream == "" {
		opts.Stream = erasurev1.LifecycleStream
	}
	if opts.ProgressEvery == 0 {
		opts.ProgressEvery = 10000
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	done := func(r Report) Report {
		r.Stream = opts.Stream
		return r
	}
	stream, err := src.Stream(ctx, opts.Stream)
	if err != nil {
		return done(Report{}), fmt.Errorf("look up stream %s: %w", opts.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return done(Report{}), fmt.Errorf("read the state of stream %s: %w", opts.Stream, err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	from, fromStart := opts.FromSeq, opts.FromSeq <= first
	if fromStart {
		from = first
	}
	if info.State.Msgs == 0 || from > last {
		r := done(Report{OK: true, Complete: true})
		progress(Progress{Stream: opts.Stream, LastSeq: last})
		return r, nil
	}
	v := NewVerifier(keys, Options{FromStart: fromStart})
	if !fromStart {
		raw, err := stream.GetMsg(ctx, from-1)
		switch {
		case err == nil:
			v.Seed(Entry{StreamSeq: raw.Sequence, Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return done(v.Report()), fmt.Errorf("read the entry before sequence %d of stream %s: %w", from, opts.Stream, err)
		}
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return done(v.Report()), fmt.Errorf("read stream %s: %w", opts.Stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		return done(v.Report()), fmt.Errorf("read stream %s: %w", opts.Stream, err)
	}
	defer it.Stop()
	var n, seq uint64
	report := func() Progress {
		return Progress{Stream: opts.Stream, Checked: n, Seq: seq, LastSeq: last, Problems: v.problemCount}
	}
	for seq < last {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return done(v.Report()), fmt.Errorf("read stream %s after sequence %d: %w", opts.Stream, seq, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return done(v.Report()), fmt.Errorf("read stream %s after sequence %d: %w", opts.Stream, seq, err)
		}
		seq = meta.Sequence.Stream
		v.Add(Entry{StreamSeq: seq, Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
		if n++; n%opts.ProgressEvery == 0 {
			progress(report())
		}
		if meta.NumPending == 0 {
			break // the last message as of the start was deleted (a copy)
		}
		if opts.Limit > 0 && n >= opts.Limit && seq < last {
			it.Stop()
			progress(report())
			r := done(v.Report())
			r.NextSeq = seq + 1
			return r, nil
		}
	}
	it.Stop()
	progress(report())
	r := done(v.Report())
	r.Complete = true
	return r, nil
}

// Walker checks one stream with one key ring: what the coordinator serves
// at GET /v1/audit/verify.
type Walker struct {
	src    Source
	keys   *KeyRing
	stream string
}

// NewWalker returns a walker of stream (empty: the lifecycle stream).
func NewWalker(src Source, keys *KeyRing, stream string) *Walker {
	return &Walker{src: src, keys: keys, stream: stream}
}

// Verify walks the stream from fromSeq (0: the start), at most limit
// entries (0: all); see Walk.
func (w *Walker) Verify(ctx context.Context, fromSeq, limit uint64, progress func(Progress)) (Report, error) {
	return Walk(ctx, w.src, w.keys, WalkOptions{Stream: w.stream, FromSeq: fromSeq, Limit: limit}, progress)
}

// KeyIDs are the ids of the walker's keys, the signing key first.
func (w *Walker) KeyIDs() []string { return w.keys.IDs() }
