package backupstore

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/lib/worker"
)

func TestPurgeActions(t *testing.T) {
	t.Parallel()
	p := NewPurger(newTestStore(t), newTestLedger(t))
	tests := []struct {
		name      string
		task      worker.Task
		wantItems int64
		wantCode  string // permanent error code; "" for success
	}{
		{name: "suppress writes the ledger entry", task: worker.Task{JobID: "job-1", AccountID: "acc-a", Action: ActionSuppress}, wantItems: 1},
		{name: "suppress again finds it", task: worker.Task{JobID: "job-1", AccountID: "acc-a", Action: ActionSuppress}, wantItems: 0},
		{name: "verify with nothing held", task: worker.Task{JobID: "job-1", AccountID: "acc-a", Action: ActionVerifyRotated}},
		{name: "unknown action", task: worker.Task{JobID: "job-1", AccountID: "acc-a", Action: "delete"}, wantCode: "unsupported_action"},
		{name: "empty action", task: worker.Task{JobID: "job-1", AccountID: "acc-a"}, wantCode: "unsupported_action"},
		{name: "e-mail address as account", task: worker.Task{JobID: "job-1", AccountID: "jane@example.org", Action: ActionSuppress}, wantCode: "bad_task"},
		{name: "empty job id", task: worker.Task{AccountID: "acc-a", Action: ActionSuppress}, wantCode: "bad_task"},
	}
	for _, tt := range tests { // in order: the steps build on each other
		t.Run(tt.name, func(t *testing.T) {
			res, err := p.Purge(context.Background(), tt.task)
			if tt.wantCode == "" {
				if err != nil || res.ItemsPurged != tt.wantItems {
					t.Fatalf("Purge = %d items, %v; want %d, nil", res.ItemsPurged, err, tt.wantItems)
				}
				return
			}
			var pe *worker.PermanentError
			if !errors.As(err, &pe) || pe.Code != tt.wantCode {
				t.Fatalf("Purge error = %v, want a permanent error %q", err, tt.wantCode)
			}
			if strings.Contains(err.Error(), "jane@") {
				t.Errorf("error %q repeats an e-mail address", err)
			}
		})
	}
}

func TestFootprint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newTestStore(t)
	p := NewPurger(s, newTestLedger(t))
	held := []string{"acc-a", "acc-b"}
	src := logsOnly(t, func() []string { return held })
	take(t, s, src)
	held = []string{"acc-a"}
	take(t, s, src)
	if _, err := p.Purge(ctx, worker.Task{JobID: "job-1", AccountID: "acc-b", Action: ActionSuppress}); err != nil {
		t.Fatal(err)
	}

	fps, err := p.Footprint(ctx, []string{"acc-a", "acc-b", "acc-c", "acc-a"})
	if err != nil {
		t.Fatalf("Footprint: %v", err)
	}
	want := []struct {
		id     string
		detail map[string]int64
	}{
		{"acc-a", map[string]int64{KindSnapshots: 2, KindInLedger: 0, KindSnapshotsUnchecked: 0}},
		{"acc-b", map[string]int64{KindSnapshots: 1, KindInLedger: 1, KindSnapshotsUnchecked: 0}},
		{"acc-c", map[string]int64{KindSnapshots: 0, KindInLedger: 0, KindSnapshotsUnchecked: 0}},
		{"acc-a", map[string]int64{KindSnapshots: 2, KindInLedger: 0, KindSnapshotsUnchecked: 0}},
	}
	if len(fps) != len(want) {
		t.Fatalf("Footprint returned %d entries, want %d", len(fps), len(want))
	}
	for i, w := range want {
		if fps[i].AccountID != w.id || fps[i].Items != w.detail[KindSnapshots] || !maps.Equal(fps[i].Detail, w.detail) {
			t.Errorf("footprint %d = %+v, want %s with %v", i, fps[i], w.id, w.detail)
		}
	}
	if fps, err := p.Footprint(ctx, nil); err != nil || len(fps) != 0 {
		t.Errorf("Footprint(nil) = %v, %v; want none", fps, err)
	}
}
