package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Append adds records to the open segment of the hour that contains hour
// (UTC), creating the segment, and makes them durable (fsync) before it
// returns. The hour is the hour the platform writes in; the records' own
// times are not checked against it.
//
// It holds the hour's lock while it appends and opens the file anew for
// every call: an erasure replaces the open segment under the same lock, and
// a writer that kept its file open would go on writing to the replaced
// file. A platform writer outside this package must do the same (see
// README.md). When the segment ends in a torn line (a writer crashed
// mid-append) a newline is added first, so that the torn line stays one
// malformed line and the first new record stays intact.
//
// Errors wrap ErrSegmentSealed when the hour is sealed, ErrInvalidAccountID
// (naming the record's index, never its content) when a record's account
// id cannot be one, ErrInvalidHour, or ctx.Err() while waiting for the lock.
func (s *Store) Append(ctx context.Context, hour time.Time, records []Record) error {
	h := hourOf(hour)
	if !validHour(h) {
		return fmt.Errorf("append to segment: %w", ErrInvalidHour)
	}
	var buf []byte
	for i := range records {
		if err := checkAccountID(records[i].AccountID); err != nil {
			return fmt.Errorf("append record %d to segment %s: %w", i, h, err)
		}
		buf = appendLine(buf, &records[i])
	}
	if len(buf) == 0 {
		return nil
	}
	p := s.paths(h)
	l, err := s.lockHour(ctx, p, true)
	if err != nil {
		return fmt.Errorf("append to segment %s: %w", p.name, err)
	}
	defer l.unlock()
	sealed, err := exists(p.sealed)
	if err != nil {
		return fmt.Errorf("append to segment %s: %w", p.name, err)
	}
	if sealed {
		return fmt.Errorf("append to segment %s: %w", p.name, ErrSegmentSealed)
	}
	if err := appendLocked(p, buf); err != nil {
		return fmt.Errorf("append to segment %s: %w", p.name, err)
	}
	return nil
}

// appendLocked appends whole lines to the open segment; the caller holds
// the hour's lock.
func appendLocked(p hourPaths, lines []byte) error {
	created, err := exists(p.open)
	if err != nil {
		return err
	}
	created = !created
	f, err := os.OpenFile(p.open, os.O_RDWR|os.O_APPEND|os.O_CREATE, filePerm)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if size := fi.Size(); size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read end: %w", err)
		}
		if last[0] != '\n' {
			lines = append([]byte{'\n'}, lines...)
		}
	}
	if _, err := f.Write(lines); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if created {
		return syncDir(p.dir)
	}
	return nil
}

// Seal closes the hour that contains hour (UTC): it compresses the open
// segment into the sealed segment HH.jsonl.gz, writes its index sidecar
// first (so the index has the segment's accounts before the segment
// exists), renames the sealed segment into place and removes the open
// one, each step synced. From then on the hour takes no appends and
// changes only by erasure.
//
// Seal is idempotent: an hour already sealed, or with nothing written,
// is left as it is (and a seal that a crash interrupted is completed).
// Malformed lines are sealed as they are and counted. Errors wrap
// ErrInvalidHour, or ctx.Err() while waiting for the lock.
func (s *Store) Seal(ctx context.Context, hour time.Time) error {
	h := hourOf(hour)
	if !validHour(h) {
		return fmt.Errorf("seal segment: %w", ErrInvalidHour)
	}
	p := s.paths(h)
	if err := s.seal(ctx, h, p); err != nil {
		return fmt.Errorf("seal segment %s: %w", p.name, err)
	}
	return nil
}

func (s *Store) seal(ctx context.Context, h hourID, p hourPaths) error {
	l, err := s.lockHour(ctx, p, true)
	if err != nil {
		return err
	}
	defer l.unlock()
	sealed, err := exists(p.sealed)
	if err != nil {
		return err
	}
	in, err := os.Open(p.open)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer in.Close()
	if sealed {
		return s.removeStaleOpen(p)
	}
	tmp, err := createTemp(p, sealedSuffix)
	if err != nil {
		return err
	}
	sw := s.newSegmentWriter(tmp, h)
	lf := lineFilter{collect: make(map[string]struct{}), out: sw}
	if err := lf.run(ctx, in); err != nil {
		sw.release()
		discardTemp(tmp)
		return err
	}
	s.noteMalformed(p, lf.malformed)
	if err := sw.finish(); err != nil {
		discardTemp(tmp)
		return err
	}
	if err := s.installSealed(h, p, tmp, sortedKeys(lf.collect)); err != nil {
		return err
	}
	if err := s.at(pointSealAfterRename, h); err != nil {
		return err
	}
	if err := s.removeStaleOpen(p); err != nil {
		return err
	}
	s.stats.seals.Add(1)
	return nil
}

// installSealed puts a complete replacement of the sealed segment into
// place whose accounts may be more than the old one's: the sidecar listing
// them first, then the segment. A crash between the two leaves a sidecar
// that lists accounts the segment lacks, which is harmless; the other
// order could leave a segment with an account its sidecar does not list.
// The caller holds the hour's lock.
func (s *Store) installSealed(h hourID, p hourPaths, tmp *os.File, accounts []string) error {
	if _, err := s.writeSidecar(p, accounts); err != nil {
		discardTemp(tmp)
		return err
	}
	if err := s.at(pointSealAfterSidecar, h); err != nil {
		discardTemp(tmp)
		return err
	}
	if _, err := commitTemp(tmp, p.sealed, nil, nil); err != nil {
		return fmt.Errorf("install sealed segment: %w", err)
	}
	return nil
}

// addLines adds whole lines of one account to the hour, for Seed: to the
// open segment when the hour is open, else into the sealed segment (a
// rewrite that keeps every line and adds these, creating the segment when
// there is none). It returns whether the hour's sealed segment took them.
func (s *Store) addLines(ctx context.Context, h hourID, account string, lines []byte) (sealed bool, err error) {
	p := s.paths(h)
	l, err := s.lockHour(ctx, p, true)
	if err != nil {
		return false, err
	}
	defer l.unlock()
	sealed, err = exists(p.sealed)
	if err != nil {
		return false, err
	}
	open, err := exists(p.open)
	if err != nil {
		return false, err
	}
	switch {
	case open && sealed:
		if err := s.removeStaleOpen(p); err != nil {
			return false, err
		}
	case open:
		return false, appendLocked(p, lines)
	}
	tmp, err := createTemp(p, sealedSuffix)
	if err != nil {
		return false, err
	}
	sw := s.newSegmentWriter(tmp, h)
	var accounts []string
	if sealed {
		in, err := os.Open(p.sealed)
		if err != nil {
			sw.release()
			discardTemp(tmp)
			return false, fmt.Errorf("open segment: %w", err)
		}
		lf := lineFilter{collect: make(map[string]struct{}), out: sw}
		err = lf.runGzip(ctx, in)
		_ = in.Close()
		if err != nil {
			sw.release()
			discardTemp(tmp)
			return false, err
		}
		s.noteMalformed(p, lf.malformed)
		accounts = sortedKeys(lf.collect)
	}
	if _, err := sw.Write(lines); err != nil {
		sw.release()
		discardTemp(tmp)
		return false, fmt.Errorf("compress segment: %w", err)
	}
	if err := sw.finish(); err != nil {
		discardTemp(tmp)
		return false, err
	}
	return true, s.installSealed(h, p, tmp, mergeSorted(accounts, account))
}
