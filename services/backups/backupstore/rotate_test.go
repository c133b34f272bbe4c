package backupstore

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
)

const day = 24 * time.Hour

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

func rotate(t *testing.T, s *Store) RotateResult {
	t.Helper()
	res, err := s.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return res
}

func list(t *testing.T, s *Store) []Snapshot {
	t.Helper()
	snaps, err := s.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return snaps
}

func TestRotateDeletesOnlyExpiredSnapshots(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	s := newTestStore(t, WithClock(clk.now)) // default retention: 35 days
	src := logsOnly(t, func() []string { return []string{"acc-a"} })
	s1 := take(t, s, src)
	clk.advance(10 * day)
	s2 := take(t, s, src)
	clk.advance(10 * day)
	s3 := take(t, s, src)

	clk.advance(15*day - time.Second) // s1 is one second short of 35 days
	if res := rotate(t, s); len(res.Deleted) != 0 || res.Kept != 3 {
		t.Fatalf("Rotate inside the window = %+v, want nothing deleted and 3 kept", res)
	}
	clk.advance(time.Second) // s1 is exactly 35 days old
	res := rotate(t, s)
	if !slices.Equal(res.Deleted, []string{s1.ID}) || res.Kept != 2 {
		t.Fatalf("Rotate = %+v, want %s deleted and 2 kept", res, s1.ID)
	}
	if got := ids(list(t, s)); !slices.Equal(got, []string{s2.ID, s3.ID}) {
		t.Errorf("List after rotation = %v, want %v", got, []string{s2.ID, s3.ID})
	}
	for _, path := range []string{s.dataDir(s1.ID), s.manifestPath(s1.ID)} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after rotation (stat: %v)", path, err)
		}
	}
	if _, err := s.Get(context.Background(), s1.ID); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("Get of a rotated snapshot = %v, want ErrSnapshotNotFound", err)
	}
	// Idempotent.
	if res := rotate(t, s); len(res.Deleted) != 0 || res.Kept != 2 {
		t.Errorf("second Rotate = %+v, want nothing more deleted", res)
	}
	clk.advance(100 * day)
	if res := rotate(t, s); len(res.Deleted) != 2 || len(list(t, s)) != 0 {
		t.Errorf("Rotate long after = %+v, want every snapshot deleted", res)
	}
}

func TestRotateHonoursConfiguredRetention(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	s := newTestStore(t, WithClock(clk.now), WithRetention(7*day))
	take(t, s, logsOnly(t, func() []string { return nil }))
	clk.advance(7 * day)
	if res := rotate(t, s); len(res.Deleted) != 1 {
		t.Errorf("Rotate after 7 days with 7 days' retention = %+v, want the snapshot deleted", res)
	}
}

func verify(p *Purger, account string) error {
	_, err := p.Purge(context.Background(), worker.Task{JobID: "job-1", AccountID: account, Category: "backups", Stage: "verify", Action: ActionVerifyRotated})
	return err
}

// verify_rotated waits (transient errors) until the last snapshot holding
// the account has rotated out.
func TestVerifyRotatedUntilTheLastSnapshotRotatesOut(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	s := newTestStore(t, WithClock(clk.now))
	p := NewPurger(s, newTestLedger(t))
	held := []string{"acc-a", "acc-b"}
	src := logsOnly(t, func() []string { return held })

	if err := verify(p, "acc-b"); err != nil {
		t.Fatalf("verify with no snapshots = %v, want success", err)
	}
	take(t, s, src)
	clk.advance(day)
	last := take(t, s, src)
	held = []string{"acc-a"} // acc-b erased from the live stores
	clk.advance(day)
	take(t, s, src)

	clk.advance(day)
	err := verify(p, "acc-b")
	if !errors.Is(err, ErrNotRotated) || worker.IsPermanent(err) || worker.ErrorClass(err) != ClassNotRotated {
		t.Fatalf("verify while held = %v (class %q), want a transient ErrNotRotated of class %q", err, worker.ErrorClass(err), ClassNotRotated)
	}
	wantWhen := last.CreatedAt.Add(DefaultRetention).Format(time.RFC3339)
	for _, want := range []string{"acc-b", "2 snapshots", "rotates out at " + wantWhen} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("verify error %q does not mention %q", err, want)
		}
	}

	clk.advance(DefaultRetention) // both expired, not yet deleted
	if err := verify(p, "acc-b"); !errors.Is(err, ErrNotRotated) || !strings.Contains(err.Error(), "run the rotation") {
		t.Errorf("verify after expiry but before rotation = %v, want a hint to rotate", err)
	}
	take(t, s, src) // a new snapshot, without acc-b
	rotate(t, s)
	if err := verify(p, "acc-b"); err != nil {
		t.Errorf("verify after rotation = %v, want success", err)
	}
	if err := verify(p, "acc-a"); !errors.Is(err, ErrNotRotated) {
		t.Errorf("verify of an account in the newest snapshot = %v, want ErrNotRotated", err)
	}
}
