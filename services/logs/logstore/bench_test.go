package logstore

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// benchSegment is a realistic hour of a busy platform: 60 accounts with
// 100 records each, interleaved, about 1.5 MB of JSON lines.
func benchSegment(b *testing.B) (raw []byte, accounts []string) {
	b.Helper()
	h := hourOf(testStart)
	var all []Record
	for i := range 60 {
		id := fmt.Sprintf("acc-%06d", i)
		accounts = append(accounts, id)
		all = append(all, newGenerator(int64(i), id).hour(h, 100)...)
	}
	// Interleave the accounts as the platform writes them: by time.
	sortRecords(all)
	for i := range all {
		raw = appendLine(raw, &all[i])
	}
	return raw, accounts
}

func sortRecords(rs []Record) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Time.Before(rs[j-1].Time); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

func gzipBytes(b *testing.B, raw []byte) []byte {
	b.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, compressionLevel)
	if _, err := zw.Write(raw); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkSegmentFilter measures the hot path of an erasure: a sealed
// segment decompressed, filtered line by line, and compressed again, in
// MB/s of uncompressed segment. "scan" is the read-only path (footprint,
// index rebuild); "stdlib" is the same rewrite with compress/gzip at its
// default level, the alternative to klauspost/compress.
//
//	go test -run '^$' -bench 'SegmentFilter|AccountOf' -benchmem ./logstore
func BenchmarkSegmentFilter(b *testing.B) {
	raw, accounts := benchSegment(b)
	compressed := gzipBytes(b, raw)
	b.Logf("segment: %d lines, %.2f MB raw, %.2f MB gzip (%.1f:1)", bytes.Count(raw, []byte{'\n'}),
		float64(len(raw))/1e6, float64(len(compressed))/1e6, float64(len(raw))/float64(len(compressed)))
	ctx := context.Background()

	b.Run("rewrite", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			zw := gzipWriters.Get().(*gzip.Writer)
			zw.Reset(io.Discard)
			lf := lineFilter{drop: dropSet(accounts[:3]), collect: make(map[string]struct{}), out: zw}
			if err := lf.runGzip(ctx, bytes.NewReader(compressed)); err != nil {
				b.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				b.Fatal(err)
			}
			gzipWriters.Put(zw)
			if lf.removed != 300 {
				b.Fatalf("removed %d, want 300", lf.removed)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			lf := lineFilter{count: dropSet(accounts[:1])}
			if err := lf.runGzip(ctx, bytes.NewReader(compressed)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("filter-only", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			lf := lineFilter{drop: dropSet(accounts[:3]), out: io.Discard}
			if err := lf.run(ctx, bytes.NewReader(raw)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			zr, err := stdgzip.NewReader(bytes.NewReader(compressed))
			if err != nil {
				b.Fatal(err)
			}
			zw := stdgzip.NewWriter(io.Discard)
			lf := lineFilter{drop: dropSet(accounts[:3]), collect: make(map[string]struct{}), out: zw}
			if err := lf.run(ctx, zr); err != nil {
				b.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAccountOf compares the line decoder with encoding/json.
func BenchmarkAccountOf(b *testing.B) {
	r := newGenerator(1, "acc-000001").hour(hourOf(testStart), 1)[0]
	line := appendLine(nil, &r)
	line = line[:len(line)-1]
	b.Run("scanner", func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		var scratch []byte
		for b.Loop() {
			if _, ok := accountOf(line, &scratch); !ok {
				b.Fatal("not a record")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			var v struct {
				AccountID string `json:"account_id"`
			}
			if err := json.Unmarshal(line, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// buildEraseBenchRoot builds a store of 6 hours in which 120 accounts have
// 50 records each hour (6000 records, about 1.5 MB raw per segment).
func buildEraseBenchRoot(b *testing.B) string {
	b.Helper()
	root := b.TempDir()
	s, err := Open(context.Background(), root)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for h := range 6 {
		hour := testStart.Add(time.Duration(h) * time.Hour)
		var recs []Record
		for i := range 120 {
			recs = append(recs, newGenerator(int64(h), fmt.Sprintf("acc-%06d", i)).hour(hourOf(hour), 50)...)
		}
		sortRecords(recs)
		if err := s.Append(context.Background(), hour, recs); err != nil {
			b.Fatal(err)
		}
		if err := s.Seal(context.Background(), hour); err != nil {
			b.Fatal(err)
		}
	}
	return root
}

// copyTree copies the bench store so that each iteration erases from a
// fresh one.
func copyTree(b *testing.B, src, dst string) {
	b.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), dirPerm)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, filePerm)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkErase measures erasing accounts from the 6 shared segments of
// eraseBenchRoot: 1 account; 100 accounts purged concurrently (coalesced
// into one pass); and, for comparison, the same 100 purged one after
// another, which is what erasure without coalescing costs.
//
//	go test -run '^$' -bench Erase -benchtime 3x ./logstore
func BenchmarkErase(b *testing.B) {
	template := buildEraseBenchRoot(b)
	for _, bc := range []struct {
		name       string
		accounts   int
		concurrent bool
		linger     time.Duration
	}{
		// The production linger: its 50ms are part of the cost.
		{"accounts=1", 1, true, DefaultLinger},
		{"accounts=100/coalesced", 100, true, DefaultLinger},
		{"accounts=100/one-by-one", 100, false, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var rewrites, passes int64
			var elapsed time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				root := filepath.Join(b.TempDir(), fmt.Sprint(i))
				copyTree(b, template, root)
				s, err := Open(context.Background(), root, WithLinger(bc.linger))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				eraseAccounts(b, s, bc.accounts, bc.concurrent)
				elapsed += time.Since(start)
				b.StopTimer()
				st := s.Stats()
				rewrites += st.SegmentRewrites
				passes += st.Passes
				_ = s.Close()
				b.StartTimer()
			}
			n := float64(b.N)
			b.ReportMetric(float64(rewrites)/n, "rewrites/op")
			b.ReportMetric(float64(passes)/n, "passes/op")
			b.ReportMetric(elapsed.Seconds()*1000/n/float64(bc.accounts), "ms/account")
		})
	}
}

func eraseAccounts(b *testing.B, s *Store, n int, concurrent bool) {
	ctx := context.Background()
	if !concurrent {
		for i := range n {
			if _, err := purge(ctx, s, fmt.Sprintf("acc-%06d", i)); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	// Hand every purge to the loop before the first pass starts, as the
	// runtime's concurrent handlers do within the linger.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := purge(ctx, s, fmt.Sprintf("acc-%06d", i))
			if err == nil && res.ItemsPurged != 300 {
				err = fmt.Errorf("removed %d records, want 300", res.ItemsPurged)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}
