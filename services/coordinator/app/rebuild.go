package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/rebuild"
)

// rebuildLockTTL bounds how long a crashed rebuild keeps others from
// starting one; a running rebuild refreshes its lock every third of it.
const rebuildLockTTL = 30 * time.Second

// Rebuilder runs rebuilds of the Redis state from the lifecycle stream, one
// at a time across every coordinator sharing the Redis (a lock key,
// "lock:rebuild" under the prefix, taken with SET NX and a TTL).
type Rebuilder struct {
	base  context.Context
	js    rebuild.Source
	store *jobstore.Store
	log   *zap.Logger
	wake  func()
	// waitPoll is how often OnEmpty looks whether another coordinator's
	// rebuild is done.
	waitPoll time.Duration
}

// NewRebuilder returns a rebuilder whose rebuilds stop when base is
// cancelled (the coordinator shuts down); wake is called after each
// rebuild to let the dispatcher see the restored due index.
func NewRebuilder(base context.Context, js rebuild.Source, store *jobstore.Store, log *zap.Logger, wake func()) *Rebuilder {
	if wake == nil {
		wake = func() {}
	}
	return &Rebuilder{base: base, js: js, store: store, log: log, wake: wake, waitPoll: 2 * time.Second}
}

// Rebuild rebuilds every job from the lifecycle stream into Redis (see
// package rebuild). It returns an error wrapping jobstore.ErrLocked when a
// rebuild is already running here or on another coordinator. ctx carries
// values only: the rebuild runs until done or until the coordinator shuts
// down, so a caller that goes away does not leave half of one.
func (r *Rebuilder) Rebuild(ctx context.Context) (rebuild.Summary, error) {
	return r.run(ctx, false)
}

// OnEmpty rebuilds when Redis holds no job but the lifecycle stream has
// events: Redis lost its data while the coordinators were down. When
// another coordinator is already rebuilding, it waits for that one to
// finish (or for its lock to expire, if it crashed) and looks again, so
// that no coordinator starts serving from an empty Redis that is being
// restored. A new deployment (no events) starts at once.
func (r *Rebuilder) OnEmpty(ctx context.Context) error {
	for {
		empty, err := r.needed(ctx)
		if err != nil || !empty {
			return err
		}
		_, err = r.run(ctx, true)
		if !errors.Is(err, jobstore.ErrLocked) {
			return err
		}
		r.log.Info("another coordinator is rebuilding the job state; waiting for it")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.waitPoll):
		}
	}
}

// needed reports whether Redis lists no job while the stream has events.
func (r *Rebuilder) needed(ctx context.Context) (bool, error) {
	n, err := r.store.Count(ctx)
	if err != nil || n > 0 {
		return false, err
	}
	s, err := r.js.Stream(ctx, erasurev1.LifecycleStream)
	if err != nil {
		return false, fmt.Errorf("look up the lifecycle stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("read the lifecycle stream's state: %w", err)
	}
	return info.State.Msgs > 0, nil
}

func (r *Rebuilder) run(ctx context.Context, onlyIfEmpty bool) (rebuild.Summary, error) {
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stop := context.AfterFunc(r.base, func() { cancel(r.base.Err()) })
	defer stop()

	lock, err := r.store.TryLock(runCtx, "rebuild", rebuildLockTTL)
	if err != nil {
		return rebuild.Summary{}, err
	}
	defer func() {
		relCtx, cancelRel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancelRel()
		if err := lock.Release(relCtx); err != nil {
			r.log.Warn("rebuild lock not released; it expires by itself", zap.Error(err))
		}
	}()
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		t := time.NewTicker(rebuildLockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				if err := lock.Refresh(runCtx); err != nil {
					cancel(fmt.Errorf("keep the rebuild lock: %w", err))
					return
				}
			}
		}
	}()
	defer func() { cancel(nil); <-refreshed }()

	if onlyIfEmpty {
		// Another coordinator may have rebuilt between our look and the lock.
		if empty, err := r.needed(runCtx); err != nil || !empty {
			return rebuild.Summary{}, err
		}
	}
	r.log.Info("rebuild of the job state from the lifecycle stream started")
	lastLog := time.Now()
	sum, err := rebuild.Rebuild(runCtx, r.js, r.store, rebuild.Options{}, func(done, total uint64) {
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			r.log.Info("rebuild progress", zap.Uint64("events_read", done), zap.Uint64("events_total", total))
		}
	})
	if cause := context.Cause(runCtx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("%w (%v)", err, cause)
	}
	if err != nil {
		return sum, err
	}
	r.wake()
	fields := []zap.Field{
		zap.Uint64("events", sum.Events), zap.Int("jobs", sum.Jobs), zap.Int("written", sum.Written), zap.Int("kept_newer", sum.KeptNewer),
		zap.Uint64("duplicates", sum.Duplicates), zap.Uint64("unapplied", sum.Unapplied), zap.Uint64("mismatches", sum.Mismatches),
		zap.Uint64("undecodable", sum.Undecodable), zap.Duration("took", sum.Duration),
	}
	if sum.Unapplied+sum.Mismatches+sum.Undecodable > 0 {
		r.log.Warn("rebuild done; some events could not be used (see the summary's problems)", fields...)
	} else {
		r.log.Info("rebuild done", fields...)
	}
	return sum, nil
}

// atStartup runs OnEmpty when enabled; see Config.RebuildOnEmpty.
func (r *Rebuilder) atStartup(ctx context.Context, enabled bool) error {
	if !enabled {
		return nil
	}
	if err := r.OnEmpty(ctx); err != nil {
		return fmt.Errorf("rebuild the job state from the lifecycle stream (or start with -rebuild-on-empty=false): %w", err)
	}
	return nil
}
