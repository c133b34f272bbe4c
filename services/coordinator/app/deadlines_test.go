package app

import (
	"context"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

func TestDeadlines(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	store := jobstore.New(rdb, prefix)
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for i, created := range []time.Time{t0, t0.AddDate(0, 0, 5), t0.AddDate(0, 0, 10)} {
		j, err := jobs.New("job-"+string(rune('a'+i)), jobs.Request{AccountID: "acc-" + string(rune('a'+i)), Origin: jobs.OriginAPI, RequestedBy: "privacy:t", Reason: "r"},
			[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}}, created)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := store.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	// Deadlines: job-a 1 Dec, job-b 6 Dec, job-c 11 Dec.
	tests := []struct {
		name    string
		now     time.Time
		within  time.Duration
		overdue bool
		want    []string
	}{
		{"nothing near", t0.AddDate(0, 0, 20), 72 * time.Hour, false, nil},
		{"one within three days", t0.AddDate(0, 0, 28), 72 * time.Hour, false, []string{"job-a"}},
		{"earliest first, overdue included", t0.AddDate(0, 0, 34), 72 * time.Hour, false, []string{"job-a", "job-b"}},
		{"overdue only", t0.AddDate(0, 0, 34), 0, true, []string{"job-a"}},
		{"a week ahead", t0.AddDate(0, 0, 28), 7 * 24 * time.Hour, false, []string{"job-a", "job-b"}},
	}
	for _, tt := range tests {
		svc := NewService(store, nil, nil, nil, WithClock(func() time.Time { return tt.now }))
		got, err := svc.Deadlines(ctx, tt.within, tt.overdue, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range got {
			ids = append(ids, j.ID)
		}
		if len(ids) != len(tt.want) || (len(ids) > 0 && ids[0] != tt.want[0]) || (len(ids) > 1 && ids[1] != tt.want[1]) {
			t.Errorf("%s: %v, want %v", tt.name, ids, tt.want)
		}
	}
}
