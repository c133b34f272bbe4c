// Package logstore is the store of the e-mail platform's event logs: every
// send, delivery, open, click and bounce, with the account, the recipient's
// address and the subject, as gzip-compressed JSON-lines segments, one per
// hour, under a root directory. It exists so that the logs purge worker can
// erase one account's records from every segment that holds them, cheaply
// and crash-safely, and can prove afterwards that nothing is left.
//
// The layout, the index and the crash windows are described in the
// module's README.md. In short: a segment is rewritten without the erased
// accounts' records into a temporary file, synced, renamed over the old
// one, and the directory synced, so that a crash leaves the old segment or
// the new one, never a torn one. An index of which accounts appear in which
// segment (one sidecar per segment) keeps erasure from reading every
// segment for every account, and erasures that wait at the same time are
// coalesced into one pass that rewrites each affected segment once.
//
// Store implements worker.Purger. It is also the platform's writer (Append,
// Seal) as far as Lethe needs one, for tests and demos, and can fill the
// segments with realistic demo records (Seed).
//
// Recipients and subjects are personal data: no error this package returns
// and nothing it logs holds any of a segment's content. Account ids and
// segment names ("2026/11/29/13") are not personal data.
package logstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// DefaultLinger is how long the erasure waits after the first of a batch of
// purges arrived for more to join it, unless WithLinger says otherwise. It
// is short against the runtime's purge timeout and long against the time
// the runtime needs to start the purges of one fetched batch of tasks.
const DefaultLinger = 50 * time.Millisecond

var _ worker.Purger = (*Store)(nil)

// Store is the event-log segments under one root directory. It is safe for
// concurrent use, and several processes (worker replicas, the seeder, the
// platform's writer) may share a root: every change to an hour's files
// holds that hour's lock.
type Store struct {
	root        string
	log         *zap.Logger
	linger      time.Duration
	parallelism int
	metrics     *metrics

	index *index
	// refreshMu serialises refresh and RebuildIndex, the only writers of
	// the in-memory index.
	refreshMu sync.Mutex

	requests chan *purgeRequest
	// closing is closed by Close; base is cancelled with it, aborting a
	// running pass.
	closing   chan struct{}
	closeOnce sync.Once
	base      context.Context
	cancel    context.CancelFunc
	loopDone  chan struct{}

	stats stats
	// hook, when set, is called at the crash points of a rewrite, seal or
	// seed; an error it returns fails the operation there. Tests crash or
	// fail the store at these points.
	hook func(pt crashPoint, h hourID) error
}

// crashPoint names a moment inside a change of an hour's files.
type crashPoint string

const (
	// pointTempPartial: part of a replacement segment is in its temporary
	// file (called each time another tempProgressStep bytes reached it).
	pointTempPartial crashPoint = "temp-partial"
	// pointBeforeRename: the replacement is complete and synced.
	pointBeforeRename crashPoint = "before-rename"
	// pointAfterRename: renamed over the segment, directory not synced.
	pointAfterRename crashPoint = "after-rename"
	// pointAfterSegment: segment replaced and synced, sidecar not yet.
	pointAfterSegment crashPoint = "after-segment"
	// pointDirSynced: an erasure synced the directory of a segment it
	// found nothing to remove from.
	pointDirSynced crashPoint = "dir-synced"
	// pointSealAfterSidecar: a seal or seed wrote the grown sidecar, the
	// segment is not renamed yet.
	pointSealAfterSidecar crashPoint = "seal-after-sidecar"
	// pointSealAfterRename: a seal renamed the sealed segment into place
	// and has not removed the open one.
	pointSealAfterRename crashPoint = "seal-after-rename"
)

// tempProgressStep is how often (in bytes written to the temporary file)
// pointTempPartial fires.
const tempProgressStep = 16 << 10

func (s *Store) at(pt crashPoint, h hourID) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(pt, h)
}

type options struct {
	log         *zap.Logger
	linger      time.Duration
	parallelism int
	reg         prometheus.Registerer
}

// Option configures a Store. Options validate their arguments: Open returns
// an error wrapping ErrInvalidOption for a bad one.
type Option func(*options) error

// WithLogger sets the logger (default: none). The store logs what the
// worker runtime cannot see: malformed lines kept, sidecars rebuilt,
// recovery after a crash, and one line per erasure pass.
func WithLogger(l *zap.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		o.log = l
		return nil
	}
}

// WithLinger sets how long an erasure pass waits after the first purge
// arrived for others to join it (default DefaultLinger; 0 starts at once,
// still taking every purge already waiting).
func WithLinger(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 || d > time.Minute {
			return fmt.Errorf("%w: linger %s must be between 0 and 1m", ErrInvalidOption, d)
		}
		o.linger = d
		return nil
	}
}

// WithParallelism sets how many segments an erasure pass or a footprint
// works on at once (default: the CPUs, at most 4). Rewriting is
// decompression and compression, so more than the CPUs gains nothing.
func WithParallelism(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 256 {
			return fmt.Errorf("%w: parallelism %d must be between 1 and 256", ErrInvalidOption, n)
		}
		o.parallelism = n
		return nil
	}
}

// WithRegisterer registers the store's Prometheus collectors
// (lethe_logs_*) with reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) error {
		if reg == nil {
			return fmt.Errorf("%w: nil registerer", ErrInvalidOption)
		}
		o.reg = reg
		return nil
	}
}

// Open opens the store under root, creating root and root/segments when
// they are missing. It finishes what a crash interrupted (removes stale
// temporary files, completes an interrupted seal, removes orphaned
// sidecars), loads the index and rebuilds the sidecars that are missing or
// damaged, then starts the erasure loop. Call Close to stop it.
//
// It fails when root cannot be created or read, when a segment without a
// usable sidecar cannot be read (ErrCorruptSegment), or ctx ends. Errors
// wrap ErrInvalidOption for a bad Option.
func Open(ctx context.Context, root string, opts ...Option) (*Store, error) {
	o := options{log: zap.NewNop(), linger: DefaultLinger, parallelism: min(runtime.GOMAXPROCS(0), 4)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if root == "" {
		return nil, fmt.Errorf("%w: empty root directory", ErrInvalidOption)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolve log root %s: %w", root, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, segmentsDir), dirPerm); err != nil {
		return nil, fmt.Errorf("create log root %s: %w (check the path and its permissions, or set LETHE_LOGS_ROOT)", abs, err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Store{
		root:        abs,
		log:         o.log,
		linger:      o.linger,
		parallelism: o.parallelism,
		index:       newIndex(),
		requests:    make(chan *purgeRequest, 1024),
		closing:     make(chan struct{}),
		base:        base,
		cancel:      cancel,
		loopDone:    make(chan struct{}),
	}
	s.metrics = newMetrics(&s.stats, s.index)
	if o.reg != nil {
		if err := s.metrics.register(o.reg); err != nil {
			cancel()
			return nil, fmt.Errorf("register log store metrics: %w", err)
		}
	}
	if err := s.recover(ctx); err != nil {
		cancel()
		return nil, err
	}
	w, err := s.walk(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open log store at %s: %w", abs, err)
	}
	if err := s.refresh(ctx, w); err != nil {
		cancel()
		return nil, fmt.Errorf("load index of log store at %s: %w", abs, err)
	}
	segs, accts := s.index.size()
	s.log.Info("log store opened", zap.String("root", abs), zap.Int("segments", segs), zap.Int("accounts", accts))
	go s.loop()
	return s, nil
}

// Root is the store's absolute root directory.
func (s *Store) Root() string { return s.root }

// Close stops the erasure loop. A running pass is cancelled between lines
// (segments it already replaced stay replaced; the one it was writing is
// left as it was), and Purge calls still waiting fail with ErrClosed. Close
// is idempotent and always returns nil; its signature fits io.Closer.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.cancel()
		<-s.loopDone
	})
	return nil
}

// Ping checks that the root is a directory this process can create, write
// and remove files in, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Join(s.root, segmentsDir), ".ready-*")
	if err != nil {
		return fmt.Errorf("probe log root: %w", err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok\n"))
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("probe log root: %w", err)
	}
	return nil
}

// Stats are counters of what this Store did since Open. Tests and the
// lethe_logs_* metrics read them.
type Stats struct {
	// Passes counts erasure passes; Accounts the accounts they erased
	// (one pass erases every account waiting when it starts).
	Passes, Accounts int64
	// SegmentsRead counts segments an erasure read; SegmentRewrites those
	// it replaced (sealed and open).
	SegmentsRead, SegmentRewrites int64
	// RecordsRemoved counts records erasures removed.
	RecordsRemoved int64
	// MalformedLines counts lines that are no record of an account, kept,
	// each time an erasure, seal or index rebuild reads them.
	MalformedLines int64
	// Seals counts sealed segments; SidecarsRebuilt sidecars rebuilt from
	// their segment (missing or damaged, or RebuildIndex).
	Seals, SidecarsRebuilt int64
}

type stats struct {
	passes, accounts, segmentsRead, segmentRewrites, recordsRemoved, malformed, seals, sidecarsRebuilt atomic.Int64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Passes:          s.stats.passes.Load(),
		Accounts:        s.stats.accounts.Load(),
		SegmentsRead:    s.stats.segmentsRead.Load(),
		SegmentRewrites: s.stats.segmentRewrites.Load(),
		RecordsRemoved:  s.stats.recordsRemoved.Load(),
		MalformedLines:  s.stats.malformed.Load(),
		Seals:           s.stats.seals.Load(),
		SidecarsRebuilt: s.stats.sidecarsRebuilt.Load(),
	}
}

// RebuildIndex re-creates every sidecar from its segment and reloads the
// in-memory index, for after an incident (sidecars lost or suspected
// wrong). It reads every sealed segment once, each under its hour's lock,
// so erasures and writers keep running meanwhile. It also finishes what
// crashes interrupted, as Open does. Errors wrap ErrCorruptSegment when a
// segment cannot be read; the other segments are indexed regardless.
func (s *Store) RebuildIndex(ctx context.Context) error {
	if err := s.recover(ctx); err != nil {
		return err
	}
	w, err := s.walk(ctx)
	if err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	var errs []error
	for _, h := range sortedHours(w) {
		if !w[h].sealed {
			continue
		}
		if err := s.indexHour(ctx, h); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("rebuild index: %w", ctx.Err())
			}
			errs = append(errs, err)
		}
	}
	for h := range s.index.known() {
		if f := w[h]; f == nil || !f.sealed {
			s.index.drop(h)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	return nil
}

// recover finishes what crashes interrupted, hour by hour under the hour's
// lock (so a live writer elsewhere is never disturbed): temporary files
// are removed (the lock holder is the only one who writes them, so under
// the lock they are stale), an open segment next to its sealed one is
// removed (the seal had completed: the sealed segment holds every line),
// and a sidecar without segment is removed.
func (s *Store) recover(ctx context.Context) error {
	w, err := s.walk(ctx)
	if err != nil {
		return fmt.Errorf("recover log store: %w", err)
	}
	for _, h := range sortedHours(w) {
		f := w[h]
		if len(f.temps) == 0 && !(f.open && f.sealed) && !(f.sidecar && !f.sealed && !f.open) {
			continue
		}
		if err := s.recoverHour(ctx, h, f.temps); err != nil {
			return fmt.Errorf("recover segment %s: %w", h, err)
		}
	}
	return nil
}

func (s *Store) recoverHour(ctx context.Context, h hourID, temps []string) error {
	p := s.paths(h)
	l, err := s.lockHour(ctx, p, true)
	if err != nil {
		return err
	}
	defer l.unlock()
	if n := s.removeTemps(p, temps); n > 0 {
		s.log.Info("removed temporary files of an interrupted change", zap.String("segment", p.name), zap.Int("files", n))
	}
	sealed, err := exists(p.sealed)
	if err != nil {
		return err
	}
	open, err := exists(p.open)
	if err != nil {
		return err
	}
	switch {
	case sealed && open:
		if err := s.removeStaleOpen(p); err != nil {
			return err
		}
		s.log.Info("completed an interrupted seal", zap.String("segment", p.name))
	case !sealed && !open:
		if err := os.Remove(p.sidecar); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove orphaned sidecar: %w", err)
		}
	}
	return nil
}

// removeTemps removes the named temporary files of the hour; the caller
// holds its lock.
func (s *Store) removeTemps(p hourPaths, temps []string) int {
	n := 0
	for _, name := range temps {
		if err := os.Remove(filepath.Join(p.dir, name)); err == nil {
			n++
		}
	}
	return n
}

// removeStaleOpen removes an open segment whose sealed segment exists: a
// seal that crashed after renaming the sealed segment into place. The
// caller holds the hour's lock.
func (s *Store) removeStaleOpen(p hourPaths) error {
	if err := os.Remove(p.open); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove open segment of a completed seal: %w", err)
	}
	return syncDir(p.dir)
}
