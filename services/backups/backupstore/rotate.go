package backupstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// RotateResult says what Rotate did.
type RotateResult struct {
	// Deleted are the ids of the expired snapshots deleted, including
	// expired ones whose catalog entry was damaged.
	Deleted []string
	// Abandoned are the ids of incomplete snapshots (left by a crashed
	// take) whose files were removed.
	Abandoned []string
	// Kept counts the catalogued snapshots still inside the window.
	Kept int
	// Busy counts incomplete snapshots left alone because a snapshot is
	// being taken; a later Rotate removes them if they are abandoned.
	Busy int
	// Damaged are the ids of damaged catalog entries inside the window,
	// kept for an operator to look at.
	Damaged []string
}

// Rotate deletes every snapshot older than the retention window
// (created + retention <= now, by the store's clock): first its files,
// then its catalog entry, each removal fsynced. A damaged catalog entry is
// deleted the same way once the time in its id has expired. When no
// snapshot is being taken (in any process), it also removes incomplete
// snapshots and temporary catalog files that crashes left behind.
//
// Expired snapshots are deleted even when that leaves none: the retention
// window is what the erasure deadline relies on. Rotate is idempotent; a
// crash half-way leaves a catalogued snapshot with missing files, which the
// next Rotate deletes. A Restore of a snapshot that Rotate deletes at the
// same time fails.
func (s *Store) Rotate(ctx context.Context) (RotateResult, error) {
	var res RotateResult
	inv, _, err := s.inventory(ctx)
	if err != nil {
		return res, err
	}
	now := s.now()
	for _, snap := range inv.Snapshots {
		if !s.expired(snap.CreatedAt, now) {
			res.Kept++
			continue
		}
		if err := s.deleteSnapshot(snap.ID); err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, snap.ID)
	}
	for _, id := range inv.Damaged {
		created, err := idTime(id)
		if err != nil || !s.expired(created, now) {
			res.Damaged = append(res.Damaged, id)
			continue
		}
		if err := s.deleteSnapshot(id); err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, id)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	lock, err := s.tryLockExclusive()
	if err != nil {
		return res, err
	}
	if lock == nil {
		res.Busy = len(inv.Incomplete)
		return res, nil
	}
	defer lock.unlock()
	for _, id := range inv.Incomplete {
		// The inventory was read before the lock: a take may have
		// completed in between.
		if _, err := os.Stat(s.manifestPath(id)); err == nil {
			continue
		}
		if err := os.RemoveAll(s.dataDir(id)); err != nil {
			return res, fmt.Errorf("remove incomplete snapshot %s: %w", id, err)
		}
		res.Abandoned = append(res.Abandoned, id)
	}
	if len(res.Abandoned) > 0 {
		if err := syncDir(s.snapshotsDir()); err != nil {
			return res, fmt.Errorf("sync snapshot directory: %w", err)
		}
	}
	names, err := readDirNames(s.catalogDir())
	if err != nil {
		return res, fmt.Errorf("list backup catalog: %w", err)
	}
	for _, name := range names {
		// Temporary files belong to takes, and none is running.
		if isTempName(name) {
			if err := os.Remove(filepath.Join(s.catalogDir(), name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("remove temporary catalog file: %w", err)
			}
		}
	}
	return res, nil
}

// deleteSnapshot removes a snapshot's files, then its catalog entry. In
// between, the snapshot is still catalogued: it counts as holding its
// accounts until it is gone.
func (s *Store) deleteSnapshot(id string) error {
	if err := os.RemoveAll(s.dataDir(id)); err != nil {
		return fmt.Errorf("delete files of snapshot %s: %w", id, err)
	}
	if err := syncDir(s.snapshotsDir()); err != nil {
		return fmt.Errorf("delete files of snapshot %s: sync directory: %w", id, err)
	}
	if err := os.Remove(s.manifestPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete catalog entry of snapshot %s: %w", id, err)
	}
	s.forget(id)
	if err := syncDir(s.catalogDir()); err != nil {
		return fmt.Errorf("delete catalog entry of snapshot %s: sync directory: %w", id, err)
	}
	return nil
}
