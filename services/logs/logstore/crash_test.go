package logstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// The crash tests run a store operation in a child process (this test
// binary again, running only TestHelperProcess) that SIGKILLs itself at a
// crash point: no deferred cleanup, no flush, exactly what a kill -9 or an
// OOM kill leaves. The parent then checks the files as the crash left them,
// reopens the store (recovery) and retries.

const (
	helperEnv      = "LETHE_LOGSTORE_CRASH_HELPER"
	helperRootEnv  = "LETHE_LOGSTORE_CRASH_ROOT"
	helperOpEnv    = "LETHE_LOGSTORE_CRASH_OP"
	helperPointEnv = "LETHE_LOGSTORE_CRASH_POINT"
	helperArgEnv   = "LETHE_LOGSTORE_CRASH_ARG"
	// helperExitMissed is the child's exit code when the crash point was
	// never reached.
	helperExitMissed = 3
)

// TestHelperProcess is not a test: it is the child of the crash tests.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("the child process of the crash tests")
	}
	ctx := context.Background()
	s, err := Open(ctx, os.Getenv(helperRootEnv), WithLinger(0), WithParallelism(1))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	point := crashPoint(os.Getenv(helperPointEnv))
	s.hook = func(pt crashPoint, _ hourID) error {
		if pt == point {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
		return nil
	}
	arg := os.Getenv(helperArgEnv)
	switch op := os.Getenv(helperOpEnv); op {
	case "purge":
		_, err = purge(ctx, s, arg)
	case "seal":
		err = s.Seal(ctx, testStart)
	case "seed":
		_, err = s.Seed(ctx, arg, SeedOptions{Hours: 1, RecordsPerHour: 100, Start: testStart}, nil)
	default:
		t.Fatalf("unknown op %q", op)
	}
	t.Logf("crash point %s not reached; operation returned %v", point, err)
	os.Exit(helperExitMissed)
}

// crashAt runs op in a child process that kills itself at point.
func crashAt(t *testing.T, root, op string, point crashPoint, arg string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(),
		helperEnv+"=1", helperRootEnv+"="+root, helperOpEnv+"="+op,
		helperPointEnv+"="+string(point), helperArgEnv+"="+arg)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child did not crash (err %v):\n%s", err, out)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not killed at %s:\n%s", err, point, out)
	}
}

// writeCrashData writes two sealed hours in which each account has 1500
// records: big enough that a segment's compressed replacement takes
// several writes, so that a crash can hit it half-written. It appends and
// seals once per hour, which is quicker than Seed's merges.
func writeCrashData(t *testing.T, s *Store, accounts ...string) {
	t.Helper()
	ctx := context.Background()
	for h := range 2 {
		hour := testStart.Add(time.Duration(h) * time.Hour)
		for i, id := range accounts {
			if err := s.Append(ctx, hour, newGenerator(int64(i), id).hour(hourOf(hour), 1500)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Seal(ctx, hour); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCrashDuringErasure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		point crashPoint
		// firstReplaced: the first hour's segment is the new one after
		// the crash (the rename happened).
		firstReplaced bool
		// tempLeft: the crash leaves a temporary file behind.
		tempLeft bool
	}{
		{point: pointTempPartial, tempLeft: true},
		{point: pointBeforeRename, tempLeft: true},
		{point: pointAfterRename, firstReplaced: true},
		{point: pointAfterSegment, firstReplaced: true},
	}
	for _, tt := range tests {
		t.Run(string(tt.point), func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			s := openStore(t, root)
			writeCrashData(t, s, "acc-1", "acc-victim", "acc-3")
			before := linesByAccount(t, root)
			hashes := fileHashes(t, root)
			h0 := s.paths(hourOf(testStart))
			h1 := s.paths(hourOf(testStart.Add(time.Hour)))
			oldLines := map[string][][]byte{h0.sealed: fileLines(t, h0.sealed), h1.sealed: fileLines(t, h1.sealed)}
			victimIn0 := int64(len(oldLines[h0.sealed]) - len(withoutAccount(oldLines[h0.sealed], "acc-victim")))
			_ = s.Close()

			crashAt(t, root, "purge", tt.point, "acc-victim")

			// As the crash left it: no torn segment, each one either the
			// old or the new content, the second hour untouched.
			temps := tempFiles(t, root)
			if got := len(temps) > 0; got != tt.tempLeft {
				t.Errorf("temporary file left: %v, want %v", got, tt.tempLeft)
			}
			if tt.point == pointTempPartial && len(temps) == 1 {
				// Killed half-way: the temporary file is a torn gzip.
				lf := lineFilter{}
				f, err := os.Open(temps[0])
				if err != nil {
					t.Fatal(err)
				}
				err = lf.runGzip(context.Background(), f)
				_ = f.Close()
				if !errors.Is(err, ErrCorruptSegment) || lf.lines == 0 {
					t.Errorf("temporary file: %d lines, %v; want some lines, then torn", lf.lines, err)
				}
			}
			after := fileHashes(t, root)
			for path, sum := range hashes {
				changed := after[path] != sum
				want := tt.firstReplaced && path == h0.sealed
				if changed != want {
					t.Errorf("%s changed: %v, want %v", path, changed, want)
				}
			}
			if tt.firstReplaced {
				want := withoutAccount(oldLines[h0.sealed], "acc-victim")
				if got := fileLines(t, h0.sealed); !reflect.DeepEqual(got, want) {
					t.Errorf("replaced segment holds %d lines, want the %d others", len(got), len(want))
				}
				// The sidecar still lists the victim: harmless, and the
				// reverse (a segment with an account its sidecar misses)
				// never happens.
				if _, listed, err := loadSidecar(h0.sidecar); err != nil || !slices.Contains(listed, "acc-victim") {
					t.Errorf("sidecar = %v, %v; want the old one", listed, err)
				}
			}

			// Reopen (recovery) and retry: the erasure completes.
			s2 := openStore(t, root)
			if left := tempFiles(t, root); len(left) != 0 {
				t.Errorf("recovery left temporary files: %v", left)
			}
			checkIndexInvariant(t, s2)
			res, err := purge(context.Background(), s2, "acc-victim")
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			wantRetry := int64(len(before["acc-victim"]))
			if tt.firstReplaced {
				wantRetry -= victimIn0
			}
			if res.ItemsPurged != wantRetry {
				t.Errorf("retry removed %d records, want %d", res.ItemsPurged, wantRetry)
			}
			final := linesByAccount(t, root)
			if len(final["acc-victim"]) != 0 {
				t.Errorf("%d records of the victim left", len(final["acc-victim"]))
			}
			for _, id := range []string{"acc-1", "acc-3"} {
				if !reflect.DeepEqual(final[id], before[id]) {
					t.Errorf("records of %s changed", id)
				}
			}
			checkIndexInvariant(t, s2)
			if _, listed, _ := loadSidecar(h0.sidecar); slices.Contains(listed, "acc-victim") {
				t.Error("the retry left the stale sidecar entry")
			}
		})
	}
}

func withoutAccount(lines [][]byte, account string) [][]byte {
	var out [][]byte
	for _, l := range lines {
		var scratch []byte
		if id, ok := accountOf(l, &scratch); ok && string(id) == account {
			continue
		}
		out = append(out, l)
	}
	return out
}

func TestCrashDuringSeal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		point crashPoint
		// sealedLeft: the crash leaves the sealed segment in place (next
		// to the open one).
		sealedLeft bool
	}{
		{point: pointTempPartial},
		{point: pointSealAfterSidecar},
		{point: pointSealAfterRename, sealedLeft: true},
	}
	for _, tt := range tests {
		t.Run(string(tt.point), func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			s := openStore(t, root)
			ctx := context.Background()
			for i, id := range []string{"acc-1", "acc-2", "acc-3"} {
				recs := newGenerator(int64(i), id).hour(hourOf(testStart), 1200)
				if err := s.Append(ctx, testStart, recs); err != nil {
					t.Fatal(err)
				}
			}
			p := s.paths(hourOf(testStart))
			openBefore, err := os.ReadFile(p.open)
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Close()

			crashAt(t, root, "seal", tt.point, "")

			if got, err := os.ReadFile(p.open); err != nil || !bytes.Equal(got, openBefore) {
				t.Fatalf("open segment changed by the crashed seal (err %v)", err)
			}
			if ok, _ := exists(p.sealed); ok != tt.sealedLeft {
				t.Fatalf("sealed segment present: %v, want %v", ok, tt.sealedLeft)
			}
			if tt.sealedLeft {
				if got := len(fileLines(t, p.sealed)); got != 3600 {
					t.Errorf("sealed segment has %d lines, want 3600", got)
				}
			}

			s2 := openStore(t, root)
			if err := s2.Seal(ctx, testStart); err != nil {
				t.Fatalf("Seal after the crash: %v", err)
			}
			if ok, _ := exists(p.open); ok {
				t.Error("open segment left after the seal")
			}
			if got := len(fileLines(t, p.sealed)); got != 3600 {
				t.Errorf("sealed segment has %d lines, want 3600 (each once)", got)
			}
			fps, err := s2.Footprint(ctx, []string{"acc-1", "acc-2", "acc-3"})
			if err != nil {
				t.Fatal(err)
			}
			for _, fp := range fps {
				if fp.Items != 1200 || fp.Detail[DetailSegments] != 1 {
					t.Errorf("footprint of %s = %v, want 1200 records in 1 segment", fp.AccountID, fp.Detail)
				}
			}
			checkIndexInvariant(t, s2)
		})
	}
}

// A seed that adds an account to a sealed segment grows the sidecar
// first: killed between the two, the sidecar lists an account the segment
// does not hold yet, never the reverse.
func TestCrashDuringSeedMerge(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s := openStore(t, root)
	seedAccounts(t, s, SeedOptions{Hours: 1, RecordsPerHour: 100, Start: testStart}, "acc-1")
	p := s.paths(hourOf(testStart))
	segBefore, err := os.ReadFile(p.sealed)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	crashAt(t, root, "seed", pointSealAfterSidecar, "acc-new")

	if got, _ := os.ReadFile(p.sealed); !bytes.Equal(got, segBefore) {
		t.Error("the segment changed before its sidecar was in place")
	}
	if _, listed, err := loadSidecar(p.sidecar); err != nil || !slices.Equal(listed, []string{"acc-1", "acc-new"}) {
		t.Errorf("sidecar = %v, %v; want it grown first", listed, err)
	}
	s2 := openStore(t, root)
	checkIndexInvariant(t, s2)
	if fp := footprint(t, s2, "acc-new"); fp.Items != 0 {
		t.Errorf("footprint of the unfinished seed = %d, want 0", fp.Items)
	}
	if res, err := purge(context.Background(), s2, "acc-new"); err != nil || res.ItemsPurged != 0 {
		t.Errorf("Purge = %d, %v; want 0, nil", res.ItemsPurged, err)
	}
}

var errInjected = errors.New("injected failure")

// A failure after the rename and before the directory sync: the records
// are gone from the visible segment, but the rename may not be durable
// yet. The purge fails (and counts what it made disappear); the retry
// finds nothing to remove, and before it reports success it syncs the
// directory, so that success is only ever reported for a durable erasure.
func TestFailureBetweenRenameAndDirSync(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithParallelism(1))
	seeded := seedAccounts(t, s, smallSeed(), "acc-1", "acc-2")
	failing := hourOf(testStart.Add(time.Hour))
	fail := true
	var synced []hourID
	s.hook = func(pt crashPoint, h hourID) error {
		switch {
		case pt == pointAfterRename && h == failing && fail:
			fail = false
			return errInjected
		case pt == pointDirSynced:
			synced = append(synced, h)
		}
		return nil
	}
	res, err := purge(context.Background(), s, "acc-2")
	if !errors.Is(err, errInjected) || worker.IsPermanent(err) {
		t.Fatalf("Purge = %v, want a transient error wrapping the injected one", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(failing.String())) {
		t.Errorf("error %q does not name the segment", err)
	}
	if res.ItemsPurged != seeded["acc-2"].Records {
		t.Errorf("failed Purge counted %d records, want all %d (every rename happened)", res.ItemsPurged, seeded["acc-2"].Records)
	}
	if fp := footprint(t, s, "acc-2"); fp.Items != 0 {
		t.Errorf("footprint = %d, want 0", fp.Items)
	}

	res, err = purge(context.Background(), s, "acc-2")
	if err != nil || res.ItemsPurged != 0 {
		t.Fatalf("retry = %d, %v; want 0, nil", res.ItemsPurged, err)
	}
	if !slices.Contains(synced, failing) {
		t.Errorf("the retry synced %v, want the directory of %s among them", synced, failing)
	}
	if _, listed, _ := loadSidecar(s.paths(failing).sidecar); !slices.Equal(listed, []string{"acc-1"}) {
		t.Errorf("sidecar after the retry = %v, want [acc-1]", listed)
	}
	if fp := footprint(t, s, "acc-1"); fp.Items != seeded["acc-1"].Records {
		t.Errorf("acc-1 has %d records, want %d", fp.Items, seeded["acc-1"].Records)
	}
}
