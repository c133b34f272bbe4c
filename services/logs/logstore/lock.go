package logstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// hourLock is a held flock(2) on an hour's lock file. Every change to an
// hour's files (append, seal, seed, erasure) holds it exclusively; reads
// that must not see a half-appended line (footprints) hold it shared. The
// lock file is never renamed or removed, so every process locks the same
// inode; flock locks belong to the open file, so goroutines of one process
// exclude each other as separate processes do. It needs a local file
// system, or one whose flock works across hosts (NFSv4 emulates it).
type hourLock struct{ f *os.File }

// lockHour takes the hour's lock, waiting until it is free or ctx ends.
// The wait polls, because a blocking flock cannot be cancelled.
func (s *Store) lockHour(ctx context.Context, p hourPaths, exclusive bool) (*hourLock, error) {
	if err := s.ensureDir(p); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p.lock, os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return &hourLock{f: f}, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EWOULDBLOCK):
			_ = f.Close()
			return nil, fmt.Errorf("lock segment %s: %w", p.name, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// unlock releases the lock; closing the file does.
func (l *hourLock) unlock() { _ = l.f.Close() }
