package logstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.uber.org/zap/zaptest"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// testStart is the first hour every test seeds: fixed, so that segment
// names are known.
var testStart = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// openStore opens a store on root and closes it when the test ends.
func openStore(t testing.TB, root string, opts ...Option) *Store {
	t.Helper()
	opts = append([]Option{WithLogger(zaptest.NewLogger(t)), WithLinger(5 * time.Millisecond)}, opts...)
	s, err := Open(context.Background(), root, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newStore gives the test a store on a directory of its own.
func newStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	return openStore(t, t.TempDir(), opts...)
}

// smallSeed keeps test accounts small: 3 hours of 40 records.
func smallSeed() SeedOptions { return SeedOptions{Hours: 3, RecordsPerHour: 40, Start: testStart} }

// seedAccounts seeds each account with opts (and its own Seed), over the
// same hours.
func seedAccounts(t testing.TB, s *Store, opts SeedOptions, ids ...string) map[string]SeedResult {
	t.Helper()
	out := make(map[string]SeedResult, len(ids))
	for i, id := range ids {
		o := opts
		o.Seed = int64(i + 1)
		res, err := s.Seed(context.Background(), id, o, nil)
		if err != nil {
			t.Fatalf("Seed %s: %v", id, err)
		}
		out[id] = res
	}
	return out
}

func purge(ctx context.Context, s *Store, id string) (worker.Result, error) {
	return s.Purge(ctx, worker.Task{JobID: "job-" + id, AccountID: id, Category: "logs", Stage: "erase", Action: "delete", Attempt: 1})
}

func footprint(t testing.TB, s *Store, id string) worker.Footprint {
	t.Helper()
	fps, err := s.Footprint(context.Background(), []string{id})
	if err != nil {
		t.Fatalf("Footprint %s: %v", id, err)
	}
	return fps[0]
}

// decodedRecords reads every record of every segment (sealed and open),
// as encoding/json decodes them, keyed by account. It fails the test on a
// torn segment, which must never exist.
func decodedRecords(t testing.TB, root string) map[string][]Record {
	t.Helper()
	out := make(map[string][]Record)
	for _, line := range allLines(t, root) {
		var r Record
		if err := json.Unmarshal(line, &r); err != nil || r.AccountID == "" {
			out[""] = append(out[""], Record{Subject: string(line)})
			continue
		}
		out[r.AccountID] = append(out[r.AccountID], r)
	}
	for _, rs := range out {
		sort.SliceStable(rs, func(i, j int) bool {
			if !rs[i].Time.Equal(rs[j].Time) {
				return rs[i].Time.Before(rs[j].Time)
			}
			return rs[i].MessageID+string(rs[i].Event) < rs[j].MessageID+string(rs[j].Event)
		})
	}
	return out
}

// allLines returns every line of every segment under root, without
// newlines, segment by segment in path order.
func allLines(t testing.TB, root string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, path := range segmentFiles(t, root) {
		out = append(out, fileLines(t, path)...)
	}
	return out
}

// segmentFiles lists the sealed and open segments under root.
func segmentFiles(t testing.TB, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(filepath.Join(root, segmentsDir), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if !d.IsDir() && !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, sealedSuffix) || strings.HasSuffix(name, openSuffix)) {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk segments: %v", err)
	}
	slices.Sort(paths)
	return paths
}

// fileLines reads the lines of one segment file.
func fileLines(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open segment: %v", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("segment %s is torn: %v", path, err)
		}
		r = zr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("segment %s is torn: %v", path, err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		out = append(out, slices.Clone(sc.Bytes()))
	}
	return out
}

// fileHashes maps every file under root/segments (temporary files and
// locks excluded) to its SHA-256.
func fileHashes(t testing.TB, root string) map[string][32]byte {
	t.Helper()
	out := make(map[string][32]byte)
	err := filepath.WalkDir(filepath.Join(root, segmentsDir), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") || strings.HasSuffix(d.Name(), lockSuffix) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[path] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatalf("hash segments: %v", err)
	}
	return out
}

// tempFiles lists the temporary files left under root/segments.
func tempFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(filepath.Join(root, segmentsDir), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), tmpMarker) {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// checkIndexInvariant fails the test when a sidecar misses an account that
// has a record in its sealed segment.
func checkIndexInvariant(t testing.TB, s *Store) {
	t.Helper()
	w, err := s.walk(context.Background())
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	for h, f := range w {
		if !f.sealed {
			continue
		}
		p := s.paths(h)
		_, listed, err := loadSidecar(p.sidecar)
		if err != nil {
			t.Errorf("segment %s: sidecar: %v", h, err)
			continue
		}
		for _, line := range fileLines(t, p.sealed) {
			var scratch []byte
			id, ok := accountOf(line, &scratch)
			if ok && validAccountID(id) && !slices.Contains(listed, string(id)) {
				t.Errorf("segment %s holds account %s, its sidecar does not list it", h, id)
			}
		}
	}
}

// linesByAccount is every line under root attributed by accountOf
// (malformed lines under ""), each account's lines sorted: byte-for-byte
// content, cheaper than decodedRecords.
func linesByAccount(t testing.TB, root string) map[string][]string {
	t.Helper()
	out := make(map[string][]string)
	var scratch []byte
	for _, line := range allLines(t, root) {
		id, ok := accountOf(line, &scratch)
		if !ok {
			id = nil
		}
		out[string(id)] = append(out[string(id)], string(line))
	}
	for _, ls := range out {
		slices.Sort(ls)
	}
	return out
}
