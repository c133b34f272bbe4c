package logstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/klauspost/compress/gzip"
	"go.uber.org/zap"
)

// compressionLevel of the segments written. klauspost/compress at level 5
// compresses a realistic segment 10:1 at 185 MB/s, and a whole rewrite
// (decompress, filter, compress) runs at about 98 MB/s against 55 MB/s
// with compress/gzip at its default level (BenchmarkSegmentFilter). Level
// 3 is a third faster at 9.2:1; segments are kept for months, so the
// smaller files win. The files are ordinary gzip, readable with zcat.
const compressionLevel = 5

var gzipWriters = sync.Pool{New: func() any {
	zw, err := gzip.NewWriterLevel(io.Discard, compressionLevel)
	if err != nil {
		panic(err) // a constant, valid level
	}
	return zw
}}

// segmentWriteBuffer is the write size of compressed segments: large
// enough that syscalls do not matter, small against a segment.
const segmentWriteBuffer = 32 << 10

// segmentWriter compresses lines into a replacement segment.
type segmentWriter struct {
	bw *bufio.Writer
	zw *gzip.Writer
}

func (s *Store) newSegmentWriter(f *os.File, h hourID) *segmentWriter {
	var w io.Writer = f
	if s.hook != nil {
		w = &progressWriter{w: f, next: tempProgressStep, fn: func() error { return s.at(pointTempPartial, h) }}
	}
	bw := bufio.NewWriterSize(w, segmentWriteBuffer)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(bw)
	return &segmentWriter{bw: bw, zw: zw}
}

func (w *segmentWriter) Write(p []byte) (int, error) { return w.zw.Write(p) }

// finish writes the gzip trailer and flushes everything to the file.
func (w *segmentWriter) finish() error {
	err := w.zw.Close()
	w.release()
	if err != nil {
		return fmt.Errorf("compress segment: %w", err)
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write segment: %w", err)
	}
	return nil
}

// release returns the compressor to the pool; finish calls it.
func (w *segmentWriter) release() {
	if w.zw != nil {
		w.zw.Reset(io.Discard)
		gzipWriters.Put(w.zw)
		w.zw = nil
	}
}

// progressWriter calls fn each time another tempProgressStep bytes were
// written through it.
type progressWriter struct {
	w    io.Writer
	n    int64
	next int64
	fn   func() error
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if err == nil && p.n >= p.next {
		p.next = p.n + tempProgressStep
		err = p.fn()
	}
	return n, err
}

// hourResult is what erasing a set of accounts from one hour did.
type hourResult struct {
	// removed counts, per account, the records whose removal is visible
	// (the replacement was renamed into place), even when err is set: a
	// retry will not find them again.
	removed   map[string]int64
	read      int
	rewritten int
	malformed int64
}

// eraseHour removes the records of accounts from the hour's segments,
// sealed and open, under the hour's lock.
func (s *Store) eraseHour(ctx context.Context, h hourID, accounts []string, temps []string) (hourResult, error) {
	res := hourResult{removed: make(map[string]int64)}
	p := s.paths(h)
	l, err := s.lockHour(ctx, p, true)
	if err != nil {
		return res, err
	}
	defer l.unlock()
	s.removeTemps(p, temps)
	sealed, err := exists(p.sealed)
	if err != nil {
		return res, fmt.Errorf("stat sealed segment: %w", err)
	}
	open, err := exists(p.open)
	if err != nil {
		return res, fmt.Errorf("stat open segment: %w", err)
	}
	if open && sealed {
		// A seal crashed after the sealed segment was in place: the open
		// one is a copy, with the records of these accounts in it too.
		if err := s.removeStaleOpen(p); err != nil {
			return res, err
		}
		s.log.Info("completed an interrupted seal", zap.String("segment", p.name))
	} else if open {
		if err := s.rewriteOpen(ctx, h, p, accounts, &res); err != nil {
			return res, fmt.Errorf("open segment: %w", err)
		}
	}
	if sealed {
		if err := s.rewriteSealed(ctx, h, p, accounts, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func dropSet(accounts []string) map[string]*counter {
	m := make(map[string]*counter, len(accounts))
	for _, a := range accounts {
		m[a] = &counter{}
	}
	return m
}

// rewriteSealed replaces the sealed segment with one without the records
// of accounts: temporary file, fsync, rename, directory fsync, then the
// sidecar the same way. The segment shrinks before its sidecar does, so
// that the sidecar never misses an account the segment holds.
func (s *Store) rewriteSealed(ctx context.Context, h hourID, p hourPaths, accounts []string, res *hourResult) error {
	in, err := os.Open(p.sealed)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	defer in.Close()
	res.read++
	tmp, err := createTemp(p, sealedSuffix)
	if err != nil {
		return err
	}
	sw := s.newSegmentWriter(tmp, h)
	drop := dropSet(accounts)
	lf := lineFilter{drop: drop, collect: make(map[string]struct{}), out: sw}
	if err := lf.runGzip(ctx, in); err != nil {
		sw.release()
		discardTemp(tmp)
		return err
	}
	s.noteMalformed(p, lf.malformed)
	res.malformed += lf.malformed
	if lf.removed == 0 {
		sw.release()
		discardTemp(tmp)
		return s.settleUnchanged(ctx, h, p, drop, lf.collect)
	}
	if err := sw.finish(); err != nil {
		discardTemp(tmp)
		return err
	}
	renamed, err := commitTemp(tmp, p.sealed,
		func() error { return s.at(pointBeforeRename, h) },
		func() error { return s.at(pointAfterRename, h) })
	if renamed {
		res.rewritten++
		addCounts(res.removed, drop)
	}
	if err != nil {
		return fmt.Errorf("replace segment: %w", err)
	}
	if err := s.at(pointAfterSegment, h); err != nil {
		return err
	}
	if _, err := s.writeSidecar(p, sortedKeys(lf.collect)); err != nil {
		// The records are gone; the old sidecar lists more than the
		// segment holds, which is harmless. The retry finds nothing to
		// remove and writes the sidecar again.
		return err
	}
	return nil
}

// settleUnchanged ends the erasure of a sealed segment that held none of
// the accounts' records. It syncs the directory first: an earlier attempt
// may have renamed the replacement into place and then failed before its
// directory sync, and this attempt must not report the erasure done before
// that rename is durable. It then shrinks a sidecar that still lists one
// of the accounts, which would cost every later pass a wasted read.
func (s *Store) settleUnchanged(ctx context.Context, h hourID, p hourPaths, drop map[string]*counter, present map[string]struct{}) error {
	if err := syncDir(p.dir); err != nil {
		return err
	}
	if err := s.at(pointDirSynced, h); err != nil {
		return err
	}
	_, listed, err := loadSidecar(p.sidecar)
	if err == nil {
		stale := false
		for _, a := range listed {
			if drop[a] != nil {
				stale = true
				break
			}
		}
		if !stale {
			return nil
		}
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, err := s.writeSidecar(p, sortedKeys(present)); err != nil {
		return err
	}
	return nil
}

// rewriteOpen replaces the open segment with one without the records of
// accounts. Writers append under the same lock and reopen the file for
// every append, so none of them keeps writing to the replaced file.
func (s *Store) rewriteOpen(ctx context.Context, h hourID, p hourPaths, accounts []string, res *hourResult) error {
	in, err := os.Open(p.open)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer in.Close()
	res.read++
	tmp, err := createTemp(p, openSuffix)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(tmp, 64<<10)
	drop := dropSet(accounts)
	lf := lineFilter{drop: drop, out: bw}
	if err := lf.run(ctx, in); err != nil {
		discardTemp(tmp)
		return err
	}
	s.noteMalformed(p, lf.malformed)
	res.malformed += lf.malformed
	if lf.removed == 0 {
		discardTemp(tmp)
		if err := syncDir(p.dir); err != nil {
			return err
		}
		return s.at(pointDirSynced, h)
	}
	if err := bw.Flush(); err != nil {
		discardTemp(tmp)
		return fmt.Errorf("write: %w", err)
	}
	renamed, err := commitTemp(tmp, p.open,
		func() error { return s.at(pointBeforeRename, h) },
		func() error { return s.at(pointAfterRename, h) })
	if renamed {
		res.rewritten++
		addCounts(res.removed, drop)
	}
	return err
}

func addCounts(dst map[string]int64, src map[string]*counter) {
	for a, c := range src {
		if c.n > 0 {
			dst[a] += c.n
		}
	}
}

// noteMalformed counts and logs kept malformed lines: by number, never by
// content.
func (s *Store) noteMalformed(p hourPaths, n int64) {
	if n == 0 {
		return
	}
	s.stats.malformed.Add(n)
	s.log.Warn("malformed lines in segment kept", zap.String("segment", p.name), zap.Int64("lines", n))
}
