package logstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
)

// Accounts returns, sorted and distinct, the accounts the store holds
// records of: those found in the open segments, each read under its hour's
// shared lock, and those the index lists for the sealed segments (refreshed
// from disk afterwards, so that a segment sealed meanwhile, and whatever
// other processes sealed, seeded or erased, is seen). It reads no sealed
// segment whose sidecar is usable.
//
// The list may name more accounts than hold records, never fewer: a
// sidecar can still list an account whose records an interrupted erasure
// removed (see README.md, "The index"), until the next erasure of that hour
// shrinks it. Records appended after Accounts began may be missed. Backups
// catalogue a snapshot's accounts with it.
//
// Errors wrap ErrCorruptSegment for a sealed segment without a usable
// sidecar that cannot be decompressed, or the read error.
func (s *Store) Accounts(ctx context.Context) ([]string, error) {
	w, err := s.walk(ctx)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	set := make(map[string]struct{})
	for _, h := range sortedHours(w) {
		if !w[h].open {
			continue
		}
		if err := s.collectOpen(ctx, h, set); err != nil {
			return nil, fmt.Errorf("list accounts: segment %s: %w", h, err)
		}
	}
	// Walk again: an open segment sealed after the first walk is read
	// through its sidecar now.
	if w, err = s.walk(ctx); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	if err := s.refresh(ctx, w); err != nil {
		return nil, fmt.Errorf("list accounts: load index: %w", err)
	}
	s.index.mu.RLock()
	for a := range s.index.accounts {
		set[a] = struct{}{}
	}
	s.index.mu.RUnlock()
	return slices.Sorted(maps.Keys(set)), nil
}

// collectOpen adds the accounts of the hour's open segment to set, under
// the hour's shared lock, so that no half-appended line is read. A segment
// sealed meanwhile adds nothing here; the refresh that follows finds it.
func (s *Store) collectOpen(ctx context.Context, h hourID, set map[string]struct{}) error {
	p := s.paths(h)
	l, err := s.lockHour(ctx, p, false)
	if err != nil {
		return err
	}
	defer l.unlock()
	f, err := os.Open(p.open)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	lf := lineFilter{collect: set}
	return lf.run(ctx, f)
}
