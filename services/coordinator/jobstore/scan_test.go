package jobstore_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

func TestScansReadOldestFirstWithinTheirBound(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	s := jobstore.New(rdb, prefix)
	ctx := context.Background()
	// Five running jobs created a minute apart, the oldest first; job j1
	// then fails.
	for i := range 5 {
		j := newJob(t, fmt.Sprintf("j%d", i), fmt.Sprintf("acc-%d", i), "", "contacts")
		j.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
		j.Tasks[0].DueAt = j.CreatedAt
		if _, _, err := s.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(ctx, "j1", func(j *jobs.Job) error {
		if _, err := j.MarkDispatched(jobs.TaskKey{Category: "contacts", Stage: "erase"}, 1, t0); err != nil {
			return err
		}
		_, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "contacts", Stage: "erase"}, Generation: 1, ErrorCode: "refused", Error: "refused", At: t0})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rdb.ZAdd(ctx, s.DueKey(), redis.Z{Score: 0, Member: "malformed"})

	counts, err := s.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[jobs.Status]int64{}
	for _, st := range jobs.Statuses {
		want[st] = 0
	}
	want[jobs.StatusRunning], want[jobs.StatusFailed] = 4, 1
	if !maps.Equal(counts, want) {
		t.Errorf("CountByStatus = %v, want %v", counts, want)
	}

	tests := []struct {
		name  string
		limit int
		stop  int // fn returns false after this many; 0: never
		want  []string
	}{
		{"all", 100, 0, []string{"j0", "j2", "j3", "j4"}},
		{"bounded", 2, 0, []string{"j0", "j2"}},
		{"stopped", 100, 2, []string{"j0", "j2"}},
	}
	for _, tt := range tests {
		t.Run("running/"+tt.name, func(t *testing.T) {
			var got []string
			err := s.ScanRunning(ctx, func(j *jobs.Job) bool {
				got = append(got, j.ID)
				return tt.stop == 0 || len(got) < tt.stop
			}, tt.limit)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ScanRunning = %v, %v; want %v", got, err, tt.want)
			}
		})
	}

	var due []string
	err = s.ScanDue(ctx, t0.Add(3*time.Minute), func(e jobstore.DueEntry) bool {
		due = append(due, e.JobID)
		return true
	}, 100)
	if want := []string{"j0", "j2", "j3"}; err != nil || !slices.Equal(due, want) {
		t.Errorf("ScanDue = %v, %v; want %v (due by then, malformed entry skipped)", due, err, want)
	}
	if err := rdb.ZRank(ctx, s.DueKey(), "malformed").Err(); err != nil {
		t.Error("ScanDue removed the malformed entry; it must only read")
	}
	if err := s.ScanRunning(ctx, func(*jobs.Job) bool { return true }, 0); err == nil {
		t.Error("ScanRunning accepted limit 0")
	}
}
