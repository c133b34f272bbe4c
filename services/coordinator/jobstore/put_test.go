package jobstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

// dump lists every key under prefix (with the prefix cut off), its type,
// its value (sorted set members with scores) and whether it expires, and
// the expiry rounded to the minute.
func dump(t *testing.T, rdb *redis.Client, prefix string) string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		fmt.Fprintf(&b, "%s (%s)", strings.TrimPrefix(k, prefix), typ)
		if ttl := rdb.PTTL(ctx, k).Val(); ttl > 0 {
			fmt.Fprintf(&b, " ttl≈%s", ttl.Round(time.Minute))
		}
		switch typ {
		case "string":
			fmt.Fprintf(&b, " = %s", rdb.Get(ctx, k).Val())
		case "zset":
			for _, z := range rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
				fmt.Fprintf(&b, " %v@%.0f", z.Member, z.Score)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func newStoreWith(t *testing.T) (*jobstore.Store, *redis.Client, string) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return jobstore.New(rdb, prefix), rdb, prefix
}

// history moves a few jobs through the states the coordinator produces.
func history(t *testing.T, s *jobstore.Store) []*jobs.Job {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	later := now.Add(time.Minute)
	plan := []jobs.TaskSpec{
		{Category: "backups", Stage: "erase", Action: "suppress"},
		{Category: "contacts", Stage: "erase", Action: "delete", DependsOn: []jobs.TaskKey{{Category: "backups", Stage: "erase"}}},
		{Category: "billing", Stage: "delete", Action: "delete", After: 24 * time.Hour},
	}
	var out []*jobs.Job
	for i, step := range []func(j *jobs.Job) error{
		func(*jobs.Job) error { return jobstore.ErrNoChange }, // just created
		func(j *jobs.Job) error { // backups done, contacts released
			_, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "backups", Stage: "erase"}, Generation: 1, Succeeded: true, Items: 1, Attempt: 1, At: later})
			return err
		},
		func(j *jobs.Job) error { // everything done
			for _, k := range []jobs.TaskKey{{Category: "backups", Stage: "erase"}, {Category: "contacts", Stage: "erase"}, {Category: "billing", Stage: "delete"}} {
				if _, err := j.ApplyReport(jobs.Report{Task: k, Generation: 1, Succeeded: true, Items: 3, Attempt: 1, At: later}); err != nil {
					return err
				}
			}
			return nil
		},
		func(j *jobs.Job) error { // failed, then replayed: running again
			if _, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "backups", Stage: "erase"}, Generation: 1, ErrorCode: "permanent", Error: "refused", Attempt: 1, At: later}); err != nil {
				return err
			}
			if _, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "billing", Stage: "delete"}, Generation: 1, Succeeded: true, Attempt: 1, At: later}); err != nil {
				return err
			}
			_, err := j.Replay(jobs.ReplaySelector{}, "sre:kim", "fixed", later.Add(time.Second))
			return err
		},
	} {
		event := ""
		if i%2 == 0 {
			event = fmt.Sprintf("evt-%d", i)
		}
		j, err := jobs.New(fmt.Sprintf("job-%d", i), jobs.Request{AccountID: fmt.Sprintf("acc-%d", i), Origin: jobs.OriginDashboard, RequestedBy: "dashboard", EventID: event}, plan, now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		j, err = s.Update(ctx, j.ID, step)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

func TestPutWritesWhatCreateAndUpdateWrote(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	orig, rdb, prefix := newStoreWith(t)
	js := history(t, orig)
	want := dump(t, rdb, prefix)

	put, rdb2, prefix2 := newStoreWith(t)
	if err := put.PutAll(ctx, js); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, rdb2, prefix2); got != want {
		t.Errorf("after PutAll:\n%s\nafter Create and Update:\n%s", got, want)
	}
	// Again: nothing changes.
	for _, j := range js {
		if err := put.Put(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if got := dump(t, rdb2, prefix2); got != want {
		t.Errorf("after a second Put:\n%s\nwant:\n%s", got, want)
	}
}

func TestPutConvergesOverStaleState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb, prefix := newStoreWith(t)
	js := history(t, s)
	want := dump(t, rdb, prefix)

	// What an old snapshot or a half-finished restore could hold: stale
	// documents, index entries and guards of earlier states.
	for _, j := range js {
		stale := *j
		stale.Status = jobs.StatusRunning
		stale.Tasks = slices.Clone(j.Tasks)
		for i := range stale.Tasks {
			stale.Tasks[i].Status = jobs.TaskScheduled
		}
		if err := s.Put(ctx, &stale); err != nil {
			t.Fatal(err)
		}
	}
	rdb.ZAdd(ctx, prefix+"idx:status:failed", redis.Z{Score: 1, Member: js[2].ID})
	rdb.Set(ctx, prefix+"active:"+js[3].AccountID, "another-job", 0)
	if err := s.PutAll(ctx, js); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, rdb, prefix); got != want {
		t.Errorf("after Put over stale state:\n%s\nwant:\n%s", got, want)
	}
}

func TestPutDoesNotBringBackExpiredEventKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	s := jobstore.New(rdb, prefix, jobstore.WithEventTTL(time.Hour))
	j, err := jobs.New("job-old", jobs.Request{AccountID: "acc-old", Origin: jobs.OriginDashboard, RequestedBy: "dashboard", EventID: "evt-old"},
		[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}}, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, j); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, prefix+"event:evt-old").Val(); n != 0 {
		t.Error("Put remembered an event whose memory had expired")
	}
}

func TestPutIfNotNewerKeepsWhatChangedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, _ := newStoreWith(t)
	js := history(t, s)
	// The rebuilt version of job-1 is older than what is stored (a report
	// was applied after the events the rebuild read); job-0's is newer.
	older, err := jobs.New(js[1].ID, jobs.Request{AccountID: js[1].AccountID, Origin: jobs.OriginDashboard, RequestedBy: "dashboard"}, []jobs.TaskSpec{{Category: "backups", Stage: "erase", Action: "suppress"}}, js[1].CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	newer := *js[0]
	newer.UpdatedAt = newer.UpdatedAt.Add(time.Minute)
	newer.Reason = "rebuilt"
	res, err := s.PutIfNotNewer(ctx, []*jobs.Job{&newer, older, js[2]})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 2 || res.KeptNewer != 1 {
		t.Errorf("result = %+v, want 2 written, 1 kept", res)
	}
	if got, _ := s.Get(ctx, js[1].ID); len(got.Tasks) != 3 {
		t.Errorf("the newer stored job was rolled back: %+v", got)
	}
	if got, _ := s.Get(ctx, js[0].ID); got.Reason != "rebuilt" {
		t.Errorf("the older stored job was not replaced: %+v", got)
	}
}

func TestLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb, prefix := newStoreWith(t)
	l, err := s.TryLock(ctx, "rebuild", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.TryLock(ctx, "rebuild", time.Minute); !errors.Is(err, jobstore.ErrLocked) {
		t.Fatalf("second TryLock = %v, want ErrLocked", err)
	}
	if err := l.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := s.TryLock(ctx, "rebuild", time.Minute)
	if err != nil {
		t.Fatalf("TryLock after Release: %v", err)
	}
	// The first holder lost it: it may neither refresh nor release it.
	if err := l.Refresh(ctx); !errors.Is(err, jobstore.ErrLocked) {
		t.Errorf("Refresh of a lost lock = %v, want ErrLocked", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if rdb.Exists(ctx, prefix+"lock:rebuild").Val() != 1 {
		t.Error("a former holder released the new holder's lock")
	}
	_ = l2.Release(ctx)
}

func TestCount(t *testing.T) {
	t.Parallel()
	s, _, _ := newStoreWith(t)
	if n, err := s.Count(context.Background()); err != nil || n != 0 {
		t.Fatalf("Count of an empty store = %d, %v", n, err)
	}
	history(t, s)
	if n, err := s.Count(context.Background()); err != nil || n != 4 {
		t.Errorf("Count = %d, %v, want 4", n, err)
	}
}
