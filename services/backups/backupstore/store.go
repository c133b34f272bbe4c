// Package backupstore is Lethe's reference backup store and the backups
// category's purger. Backups cannot be edited, so an erasure does two
// things here: at once it puts the account beyond use by writing it into
// the restore ledger (every restore re-applies the ledger before it reports
// success), and later it verifies that the last snapshot holding the
// account has rotated out of the retention window, after which the data is
// gone for good.
//
// A Store is a backup root directory:
//
//	<root>/snapshots/<id>/<name>.dump   pg_dump -Fc of each named database
//	<root>/snapshots/<id>/logs.tar      copy of the log segment tree
//	<root>/catalog/<id>.json            the snapshot's catalog entry
//	<root>/.lock                        flock: takes (shared) against clean-up (exclusive)
//
// A catalog entry (its "manifest") records the snapshot's id, creation
// time, files with their SHA-256, and the set of account ids the snapshot
// holds personal data of: for a database, the distinct account ids of the
// configured tables (optionally only rows matching a condition, for tables
// that keep pseudonymised rows), read in the dump's own transaction
// snapshot; for the log tree, what a caller-supplied lister returns before
// and after the copy. It is written last, atomically (temporary file, fsync, rename,
// directory fsync), so a snapshot exists exactly when its entry does; a data
// directory without one is incomplete (being taken, or abandoned by a crash)
// and is removed by Rotate once no snapshot is being taken. Entries are
// never rewritten, only deleted.
//
// The restore ledger (Ledger) is a PostgreSQL table of (account id, job id,
// erased at): no personal data beyond the internal account id. Restore
// restores a snapshot into new databases and a new log directory, then
// re-applies every ledger entry that can concern it through a Reapplier,
// verifies the result, and only then reports success.
//
// Purger implements worker.Purger with the actions "suppress" (write the
// ledger entry) and "verify_rotated" (succeed once no snapshot holds the
// account).
//
// Account ids are the only subject data in errors and logs; database rows
// and log contents never are.
package backupstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultRetention is how long a snapshot is kept unless WithRetention says
// otherwise: 35 days, inside the one month plus a few days that the erasure
// deadline allows for data that cannot be edited.
const DefaultRetention = 35 * 24 * time.Hour

// DefaultReapplyMargin is how far before a snapshot's creation time a
// ledger entry still counts as "newer than the snapshot" for Restore. It
// absorbs clock skew between the host that took the snapshot and the
// ledger's database, and entries written while the snapshot was read.
const DefaultReapplyMargin = time.Hour

// Names inside the backup root.
const (
	snapshotsDirName = "snapshots"
	catalogDirName   = "catalog"
	lockFileName     = ".lock"
	logsFileName     = "logs.tar"
	dumpSuffix       = ".dump"
	manifestSuffix   = ".json"
)

// Store is a backup root: its snapshots and their catalog. It is safe for
// concurrent use, and several processes may use the same root at once on a
// local file system (coordination uses flock(2)).
type Store struct {
	root      string
	retention time.Duration
	margin    time.Duration
	now       func() time.Time
	pgBinDir  string

	mu    sync.Mutex
	cache map[string]cachedManifest
}

type cachedManifest struct {
	size    int64
	modTime time.Time
	snap    Snapshot
}

type options struct {
	retention time.Duration
	margin    time.Duration
	now       func() time.Time
	pgBinDir  string
}

// Option configures a Store. Options validate their arguments: New returns
// an error wrapping ErrInvalidOption for a bad one.
type Option func(*options) error

// WithRetention sets how long snapshots are kept (default
// DefaultRetention). It decides what Rotate deletes and when the
// verify_rotated action expects an account to be gone.
func WithRetention(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: retention %s must be positive", ErrInvalidOption, d)
		}
		o.retention = d
		return nil
	}
}

// WithClock replaces time.Now, for tests and for tools that simulate time.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		o.now = now
		return nil
	}
}

// WithReapplyMargin sets how far before a snapshot's creation a ledger
// entry is still re-applied by Restore (default DefaultReapplyMargin).
// Re-applying an older entry is harmless (purges are idempotent); missing
// one is not, so err on the large side.
func WithReapplyMargin(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: re-apply margin %s must not be negative", ErrInvalidOption, d)
		}
		o.margin = d
		return nil
	}
}

// WithPgBinDir names the directory of pg_dump and pg_restore (default: the
// PATH). Use the client tools of the servers' major version or newer.
func WithPgBinDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return fmt.Errorf("%w: empty PostgreSQL bin directory", ErrInvalidOption)
		}
		o.pgBinDir = dir
		return nil
	}
}

// New opens the backup root at root, creating it and its sub-directories
// (mode 0700) if they do not exist. The error wraps ErrInvalidOption for a
// bad option, or says which directory could not be created.
func New(root string, opts ...Option) (*Store, error) {
	o := options{retention: DefaultRetention, margin: DefaultReapplyMargin, now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if root == "" {
		return nil, fmt.Errorf("%w: empty backup root", ErrInvalidOption)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolve backup root: %w", err)
	}
	for _, d := range []string{abs, filepath.Join(abs, snapshotsDirName), filepath.Join(abs, catalogDirName)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create backup directory %s: %w (check the path and its permissions)", d, err)
		}
	}
	return &Store{
		root:      abs,
		retention: o.retention,
		margin:    o.margin,
		now:       o.now,
		pgBinDir:  o.pgBinDir,
		cache:     map[string]cachedManifest{},
	}, nil
}

// Root is the absolute path of the backup root.
func (s *Store) Root() string { return s.root }

// Retention is how long snapshots are kept.
func (s *Store) Retention() time.Duration { return s.retention }

// Check makes sure the backup root's directories can be read, for
// readiness probes.
func (s *Store) Check(context.Context) error {
	for _, d := range []string{s.snapshotsDir(), s.catalogDir()} {
		f, err := os.Open(d)
		if err != nil {
			return fmt.Errorf("open backup directory: %w", err)
		}
		_, err = f.Readdirnames(1)
		_ = f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read backup directory: %w", err)
		}
	}
	return nil
}

func (s *Store) snapshotsDir() string     { return filepath.Join(s.root, snapshotsDirName) }
func (s *Store) catalogDir() string       { return filepath.Join(s.root, catalogDirName) }
func (s *Store) dataDir(id string) string { return filepath.Join(s.root, snapshotsDirName, id) }
func (s *Store) manifestPath(id string) string {
	return filepath.Join(s.root, catalogDirName, id+manifestSuffix)
}

// ExpiresAt is when a snapshot created at created leaves the retention
// window and Rotate deletes it.
func (s *Store) ExpiresAt(created time.Time) time.Time { return created.Add(s.retention) }

func (s *Store) expired(created, now time.Time) bool { return !s.ExpiresAt(created).After(now) }

// rootLock is a flock(2) on <root>/.lock. Takes hold it shared for their
// whole run; the clean-up of incomplete snapshots holds it exclusively, so
// that it never removes a snapshot that is still being taken, in this
// process or another.
type rootLock struct{ f *os.File }

func (s *Store) openLock() (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.root, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open backup root lock: %w", err)
	}
	return f, nil
}

// lockShared waits for the shared lock until ctx ends. Polling keeps the
// wait cancellable; the exclusive holder keeps it only briefly.
func (s *Store) lockShared(ctx context.Context) (*rootLock, error) {
	f, err := s.openLock()
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return &rootLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock backup root: %w", err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for the backup root lock: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tryLockExclusive returns the exclusive lock, or nil when a take holds the
// shared one.
func (s *Store) tryLockExclusive() (*rootLock, error) {
	f, err := s.openLock()
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock backup root: %w", err)
	}
	return &rootLock{f: f}, nil
}

// unlock releases the lock; closing the file does.
func (l *rootLock) unlock() {
	if l != nil {
		_ = l.f.Close()
	}
}

// ParseRetention reads a retention period: a whole number of days ("35d")
// or a Go duration ("840h"). It must be positive.
func ParseRetention(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100*366 {
			return 0, fmt.Errorf("retention %q: want whole days like 35d, or a duration like 840h", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("retention %q: want whole days like 35d, or a duration like 840h", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("retention %q must be positive", s)
	}
	return d, nil
}
