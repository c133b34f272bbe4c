package jobstore_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

func TestUpdateManyUpdatesEachJobAndRetriesRaces(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ids := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
	for i, id := range ids {
		if _, _, err := s.Create(ctx, newJob(t, id, "acc-"+id, "", "contacts", "logs")); err != nil {
			t.Fatalf("create job %d: %v", i, err)
		}
	}
	contacts := jobs.TaskKey{Category: "contacts", Stage: "erase"}
	logs := jobs.TaskKey{Category: "logs", Stage: "erase"}
	// While UpdateMany claims every job's contacts task, other writers
	// claim their logs tasks: each job must end with both, whichever
	// update lost the race and was tried again.
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := s.Update(ctx, id, func(j *jobs.Job) error {
				_, err := j.MarkDispatched(logs, 1, t0)
				return err
			}); err != nil {
				t.Errorf("claim logs of %s: %v", id, err)
			}
		}()
	}
	calls := make([]int, len(ids)+1)
	var mu sync.Mutex
	close(start)
	all := append(append([]string{}, ids...), "missing")
	res, err := s.UpdateMany(ctx, all, func(i int, j *jobs.Job) error {
		mu.Lock()
		calls[i]++
		mu.Unlock()
		ok, err := j.MarkDispatched(contacts, 1, t0)
		if err == nil && !ok {
			return jobstore.ErrNoChange
		}
		return err
	})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(all) {
		t.Fatalf("%d results for %d ids", len(res), len(all))
	}
	if !errors.Is(res[len(ids)].Err, jobs.ErrNotFound) {
		t.Errorf("unknown job: err %v, want ErrNotFound", res[len(ids)].Err)
	}
	for i, id := range ids {
		if res[i].Err != nil || res[i].Job == nil || res[i].Job.ID != id {
			t.Fatalf("result %d: %+v, want job %s", i, res[i], id)
		}
		j, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []jobs.TaskKey{contacts, logs} {
			if task, _ := j.Task(k); task.Status != jobs.TaskDispatched {
				t.Errorf("job %s task %s is %s, want dispatched (an update was lost)", id, k.Category, task.Status)
			}
		}
		// Both claims are in the claimed index, neither in the due one.
		claimed, err := s.Claimed(ctx, t0.Add(time.Minute), 100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range claimed {
			if e.JobID == id {
				n++
			}
		}
		if n != 2 {
			t.Errorf("job %s has %d claimed entries, want 2", id, n)
		}
	}
	due, err := s.Due(ctx, t0.Add(time.Hour), 100)
	if err != nil || len(due) != 0 {
		t.Errorf("due after every task was claimed: %v (err %v), want none", due, err)
	}
}

func TestUpdateManyReportsEachJobsOwnError(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for _, id := range []string{"e1", "e2"} {
		if _, _, err := s.Create(ctx, newJob(t, id, "acc-"+id, "", "contacts")); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("rule refused")
	res, err := s.UpdateMany(ctx, []string{"e1", "e2"}, func(i int, j *jobs.Job) error {
		if i == 0 {
			return boom
		}
		_, err := j.MarkDispatched(jobs.TaskKey{Category: "contacts", Stage: "erase"}, 1, t0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, boom) || res[0].Job != nil {
		t.Errorf("e1: %+v, want the function's error", res[0])
	}
	if res[1].Err != nil {
		t.Errorf("e2: %v", res[1].Err)
	}
	j, _ := s.Get(ctx, "e1")
	if task, _ := j.Task(jobs.TaskKey{Category: "contacts", Stage: "erase"}); task.Status != jobs.TaskScheduled {
		t.Errorf("e1's task is %s after a refused update, want scheduled", task.Status)
	}
}

// TestUpdatesSurviveAnEmptiedScriptCache runs against a redis-server of
// its own (on a unix socket), because emptying the script cache of the
// shared one would disturb the tests running beside it.
func TestUpdatesSurviveAnEmptiedScriptCache(t *testing.T) {
	t.Parallel()
	rdb := privateRedis(t)
	s := jobstore.New(rdb, "flush:")
	ctx := context.Background()
	if _, _, err := s.Create(ctx, newJob(t, "f1", "acc-f1", "", "contacts", "logs")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []jobs.TaskKey{{Category: "contacts", Stage: "erase"}, {Category: "logs", Stage: "erase"}} {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := s.UpdateMany(ctx, []string{"f1"}, func(_ int, j *jobs.Job) error {
			_, err := j.MarkDispatched(k, 1, t0)
			return err
		})
		if err != nil || res[0].Err != nil {
			t.Fatalf("UpdateMany after SCRIPT FLUSH: %v, %v", err, res[0].Err)
		}
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, "f1", func(j *jobs.Job) error { return j.SetMsgSeq(k, 1, 7) }); err != nil {
			t.Fatalf("Update after SCRIPT FLUSH: %v", err)
		}
	}
	j, err := s.Get(ctx, "f1")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range j.Tasks {
		if task.Status != jobs.TaskDispatched || task.MsgSeq != 7 {
			t.Errorf("task %s: %s seq %d, want dispatched seq 7", task.Category, task.Status, task.MsgSeq)
		}
	}
}

func privateRedis(t *testing.T) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not on PATH: this test runs one of its own (scripts/test installs it; or apt-get install redis-server)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { _ = rdb.Close() })
	for i := 0; ; i++ {
		if rdb.Ping(context.Background()).Err() == nil {
			return rdb
		}
		if i == 100 {
			t.Fatalf("redis-server on %s did not answer within 5 s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCancelledUpdateIsNotApplied: an update whose caller gave up before
// it was flushed is skipped, and later updates go through.
func TestCancelledUpdateIsNotApplied(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, newJob(t, "c1", "acc-c1", "", "contacts")); err != nil {
		t.Fatal(err)
	}
	k := jobs.TaskKey{Category: "contacts", Stage: "erase"}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, err := s.Update(gone, "c1", func(j *jobs.Job) error { return j.SetMsgSeq(k, 1, 99) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("update with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.Update(ctx, "c1", func(j *jobs.Job) error {
		_, err := j.MarkDispatched(k, 1, t0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	j, err := s.Get(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if task, _ := j.Task(k); task.MsgSeq != 0 || task.Status != jobs.TaskDispatched {
		t.Errorf("task %s seq %d, want dispatched with no sequence (the cancelled update skipped)", task.Status, task.MsgSeq)
	}
}
