// Package rebuild restores the coordinator's Redis state from the
// lifecycle stream, for when Redis lost its data: Redis is a projection,
// and the stream holds every transition of every job with what it needs
// to be replayed. Rebuild reads the whole stream in order, folds the
// events into jobs with the jobs package's own transitions, and writes
// each job with the keys derived from it (jobstore.Store.PutIfNotNewer).
// See "Rebuild" in docs/architecture.md.
package rebuild

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

// Source is the part of JetStream a rebuild reads: the lifecycle stream.
type Source interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// Writer stores rebuilt jobs without rolling back jobs the running
// coordinators changed meanwhile.
type Writer interface {
	PutIfNotNewer(ctx context.Context, js []*jobs.Job) (jobstore.PutResult, error)
}

var _ Writer = (*jobstore.Store)(nil)

// Options tune a rebuild. Zero values take the defaults.
type Options struct {
	// ProgressEvery is how many events are read between two calls of the
	// progress function; default 10000.
	ProgressEvery uint64
	// Writers is how many pipelines write jobs to Redis at once; default 4.
	Writers int
}

// Rebuild reads the lifecycle stream from its first event to the last one
// stored when it starts, folds the events into jobs (see Fold) and writes
// them. Events appended while it runs belong to jobs the running
// coordinators already hold in Redis (an event is only recorded after a
// Redis update), and those jobs are kept when they are newer than the
// rebuilt ones. progress, if not nil, is called with the events read so
// far and the events to read.
//
// Nothing in the stream makes Rebuild fail: undecodable, unknown and
// inapplicable events are counted in the Summary. It returns an error when
// the stream cannot be read or Redis cannot be written; the Summary then
// counts what was done, and running Rebuild again converges.
func Rebuild(ctx context.Context, src Source, w Writer, opts Options, progress func(done, total uint64)) (Summary, error) {
	start := time.Now()
	if opts.ProgressEvery == 0 {
		opts.ProgressEvery = 10000
	}
	if opts.Writers <= 0 {
		opts.Writers = 4
	}
	if progress == nil {
		progress = func(uint64, uint64) {}
	}
	f := NewFold()
	stream, err := src.Stream(ctx, erasurev1.LifecycleStream)
	if err != nil {
		return f.Finish(), fmt.Errorf("look up the lifecycle stream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return f.Finish(), fmt.Errorf("read the lifecycle stream's state: %w", err)
	}
	last, total := info.State.LastSeq, info.State.Msgs
	progress(0, total)
	if total == 0 {
		s := f.Finish()
		s.Duration = time.Since(start)
		return s, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return f.Finish(), fmt.Errorf("read the lifecycle stream: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		return f.Finish(), fmt.Errorf("read the lifecycle stream: %w", err)
	}
	defer it.Stop()
	var done, seq uint64
	for seq < last {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return f.Finish(), fmt.Errorf("read the lifecycle stream after sequence %d: %w", seq, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return f.Finish(), fmt.Errorf("read the lifecycle stream after sequence %d: %w", seq, err)
		}
		seq = meta.Sequence.Stream
		f.AddMessage(seq, msg.Data())
		if done++; done%opts.ProgressEvery == 0 {
			progress(done, total)
		}
	}
	it.Stop()
	progress(done, total)
	f.Settle()
	s := f.Finish()
	readDone := time.Now()
	s.ReadDuration = readDone.Sub(start)
	res, err := write(ctx, w, f.Jobs(), opts.Writers)
	s.Written, s.KeptNewer = res.Written, res.KeptNewer
	s.Duration = time.Since(start)
	if err != nil {
		return s, fmt.Errorf("write rebuilt jobs: %w", err)
	}
	return s, nil
}

// write stores the jobs with n concurrent writers. The jobs of one account
// go to the same writer in creation order, so that the account's guard
// ends with its newest running job.
func write(ctx context.Context, w Writer, js []*jobs.Job, n int) (jobstore.PutResult, error) {
	parts := make([][]*jobs.Job, n)
	for _, j := range js {
		i := hash(j.AccountID) % uint64(n)
		parts[i] = append(parts[i], j)
	}
	var (
		mu   sync.Mutex
		res  jobstore.PutResult
		errs []error
		wg   sync.WaitGroup
	)
	for _, part := range parts {
		wg.Go(func() {
			r, err := w.PutIfNotNewer(ctx, part)
			mu.Lock()
			defer mu.Unlock()
			res.Written += r.Written
			res.KeptNewer += r.KeptNewer
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return res, errors.Join(errs...)
}
