package logstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestSidecarFormat(t *testing.T) {
	t.Parallel()
	good := encodeSidecar([]string{"acc-1", "acc-2", "b"})
	if got, err := decodeSidecar(good); err != nil || !slices.Equal(got, []string{"acc-1", "acc-2", "b"}) {
		t.Fatalf("decode(encode) = %v, %v", got, err)
	}
	if got, err := decodeSidecar(encodeSidecar(nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty sidecar = %v, %v", got, err)
	}
	tests := []struct {
		name string
		give []byte
	}{
		{name: "empty file", give: nil},
		{name: "other header", give: append([]byte("lethe-logs-accounts 2\n"), good[len(sidecarHeader):]...)},
		{name: "truncated", give: good[:len(good)-5]},
		{name: "no trailer", give: []byte(sidecarHeader + "acc-1\n")},
		{name: "bit flip", give: bytes.Replace(good, []byte("acc-2"), []byte("acc-3"), 1)},
		{name: "line dropped", give: bytes.Replace(good, []byte("acc-2\n"), nil, 1)},
		{name: "out of order", give: encodeSidecar([]string{"b", "a"})},
		{name: "duplicate", give: encodeSidecar([]string{"a", "a"})},
		{name: "invalid id", give: encodeSidecar([]string{"a b"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := decodeSidecar(tt.give); !errors.Is(err, errCorruptSidecar) {
				t.Errorf("decode = %v, want errCorruptSidecar", err)
			}
		})
	}
}

// A sidecar that is missing or damaged is rebuilt from its segment when
// the store opens, so the index never misses an account.
func TestOpenRebuildsMissingAndDamagedSidecars(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s := openStore(t, root)
	seedAccounts(t, s, smallSeed(), "acc-1", "acc-2")
	_ = s.Close()

	missing := s.paths(hourOf(testStart))
	damaged := s.paths(hourOf(testStart.Add(time.Hour)))
	if err := os.Remove(missing.sidecar); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(damaged.sidecar, []byte(sidecarHeader+"acc-1\nend 1 00000000\n"), filePerm); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, root)
	if st := s2.Stats(); st.SidecarsRebuilt != 2 {
		t.Errorf("SidecarsRebuilt = %d, want 2", st.SidecarsRebuilt)
	}
	for _, p := range []hourPaths{missing, damaged} {
		if _, listed, err := loadSidecar(p.sidecar); err != nil || !slices.Equal(listed, []string{"acc-1", "acc-2"}) {
			t.Errorf("sidecar of %s = %v, %v; want both accounts", p.name, listed, err)
		}
	}
	res, err := purge(context.Background(), s2, "acc-2")
	if err != nil || res.ItemsPurged != 120 {
		t.Errorf("Purge = %d, %v; want 120, nil", res.ItemsPurged, err)
	}
	checkIndexInvariant(t, s2)
}

func TestRebuildIndex(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, smallSeed(), "acc-1", "acc-2")
	p := s.paths(hourOf(testStart))
	// A stale sidecar listing an account the segment no longer holds, and
	// one that was deleted.
	if _, err := s.writeSidecar(p, []string{"acc-1", "acc-2", "acc-gone"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.paths(hourOf(testStart.Add(2 * time.Hour))).sidecar); err != nil {
		t.Fatal(err)
	}
	if err := s.RebuildIndex(context.Background()); err != nil {
		t.Fatalf("RebuildIndex: %v", err)
	}
	for h := range 3 {
		p := s.paths(hourOf(testStart.Add(time.Duration(h) * time.Hour)))
		if _, listed, err := loadSidecar(p.sidecar); err != nil || !slices.Equal(listed, []string{"acc-1", "acc-2"}) {
			t.Errorf("sidecar of %s = %v, %v; want exactly both accounts", p.name, listed, err)
		}
	}
	if hs := s.index.hoursOf("acc-gone"); len(hs) != 0 {
		t.Errorf("index still lists acc-gone in %v", hs)
	}
	if hs := s.index.hoursOf("acc-1"); len(hs) != 3 {
		t.Errorf("index lists acc-1 in %d hours, want 3", len(hs))
	}
}

// Another process (here: a second Store on the same root) seals, seeds or
// erases; the index follows, because every pass refreshes it first.
func TestIndexFollowsOtherProcesses(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	a := openStore(t, root)
	b := openStore(t, root)
	seedAccounts(t, a, smallSeed(), "acc-1")
	// b seeds hours a has never seen, and adds acc-1 to an hour of a's.
	seedAccounts(t, b, SeedOptions{Hours: 2, RecordsPerHour: 10, Start: testStart.Add(2 * time.Hour)}, "acc-2")
	seedAccounts(t, b, SeedOptions{Hours: 1, RecordsPerHour: 7, Start: testStart.Add(5 * time.Hour)}, "acc-1")
	if fp := footprint(t, a, "acc-1"); fp.Items != 127 || fp.Detail[DetailSegments] != 4 {
		t.Errorf("a's footprint of acc-1 = %v, want 127 records in 4 segments", fp.Detail)
	}
	res, err := purge(context.Background(), a, "acc-2")
	if err != nil || res.ItemsPurged != 20 {
		t.Errorf("a's Purge of b's account = %d, %v; want 20, nil", res.ItemsPurged, err)
	}
	// b erases acc-1; a still has acc-1 in its index (a wasted read), but
	// counts what is there.
	if res, err := purge(context.Background(), b, "acc-1"); err != nil || res.ItemsPurged != 127 {
		t.Errorf("b's Purge = %d, %v; want 127, nil", res.ItemsPurged, err)
	}
	if fp := footprint(t, a, "acc-1"); fp.Items != 0 {
		t.Errorf("a's footprint after b's purge = %d, want 0", fp.Items)
	}
	checkIndexInvariant(t, a)
}

// Open finishes what a crash interrupted: stale temporary files, an open
// segment whose seal completed, a sidecar whose segment is gone.
func TestOpenRecovers(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s := openStore(t, root)
	seedAccounts(t, s, smallSeed(), "acc-1")
	ctx := context.Background()
	sealedHour := s.paths(hourOf(testStart))
	orphan := s.paths(hourOf(testStart.Add(10 * time.Hour)))
	if err := s.ensureDir(orphan); err != nil {
		t.Fatal(err)
	}
	// An open segment that is a copy of the sealed one (a seal that
	// crashed before removing it).
	var copyOf []byte
	for _, l := range fileLines(t, sealedHour.sealed) {
		copyOf = append(append(copyOf, l...), '\n')
	}
	for path, data := range map[string][]byte{
		sealedHour.open: copyOf,
		orphan.sidecar:  encodeSidecar([]string{"acc-1"}),
		filepath.Join(sealedHour.dir, "."+sealedHour.hh+sealedSuffix+tmpMarker+"0123"): []byte("half a segment"),
		filepath.Join(orphan.dir, "."+orphan.hh+sidecarSuffix+tmpMarker+"4567"):        []byte("half a sidecar"),
	} {
		if err := os.WriteFile(path, data, filePerm); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close()

	s2 := openStore(t, root)
	if left := tempFiles(t, root); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	for _, path := range []string{sealedHour.open, orphan.sidecar} {
		if ok, _ := exists(path); ok {
			t.Errorf("%s still there", path)
		}
	}
	if fp, err := s2.Footprint(ctx, []string{"acc-1"}); err != nil || fp[0].Items != 120 {
		t.Errorf("footprint = %v, %v; want 120 records", fp, err)
	}
}

// Files that do not fit the layout are no segments and break nothing.
func TestWalkIgnoresForeignFiles(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, SeedOptions{Hours: 1, RecordsPerHour: 5, Start: testStart}, "acc-1")
	base := filepath.Join(s.root, segmentsDir)
	for _, path := range []string{"2027", "README", "2026/13/01/10.jsonl.gz", "2026/11/README", "2026/11/29/notes.txt", "2026/11/29/25.jsonl.gz", "2026/02/31/10.jsonl.gz"} {
		full := filepath.Join(base, path)
		if err := os.MkdirAll(filepath.Dir(full), dirPerm); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("not a segment"), filePerm); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.walk(context.Background())
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	if len(w) != 1 || w[hourOf(testStart)] == nil || !w[hourOf(testStart)].sealed {
		t.Errorf("walk found %d hours, want only the seeded one", len(w))
	}
	if res, err := purge(context.Background(), s, "acc-1"); err != nil || res.ItemsPurged != 5 {
		t.Errorf("Purge = %d, %v; want 5, nil", res.ItemsPurged, err)
	}
}
