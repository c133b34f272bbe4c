package jobstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func newStore(t *testing.T) *jobstore.Store {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return jobstore.New(rdb, prefix)
}

func newJob(t *testing.T, id, acct, event string, cats ...string) *jobs.Job {
	t.Helper()
	var plan []jobs.TaskSpec
	for _, c := range cats {
		plan = append(plan, jobs.TaskSpec{Category: c, Stage: "erase", Action: "delete"})
	}
	j, err := jobs.New(id, jobs.Request{AccountID: acct, Origin: jobs.OriginDashboard, RequestedBy: "dashboard", EventID: event}, plan, t0)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestCreateIsIdempotentPerAccount(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	j, created, err := s.Create(ctx, newJob(t, "j1", "acc-1", "", "contacts"))
	if err != nil || !created || j.ID != "j1" {
		t.Fatalf("first create: %v %v %v", j, created, err)
	}
	j2, created, err := s.Create(ctx, newJob(t, "j2", "acc-1", "", "contacts"))
	if err != nil || created || j2.ID != "j1" {
		t.Fatalf("second create for the same account = %s created %v err %v; want j1, false", j2.ID, created, err)
	}
	if _, err := s.Get(ctx, "j2"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("the duplicate was stored: %v", err)
	}
}

func TestConcurrentCreatesMakeOneJob(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make(chan string, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, _, err := s.Create(ctx, newJob(t, fmt.Sprintf("j%d", i), "acc-race", "", "contacts"))
			if err != nil {
				t.Error(err)
				return
			}
			ids <- j.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Errorf("40 concurrent requests made jobs %v, want exactly one", seen)
	}
	list, _, err := s.List(ctx, jobstore.Filter{AccountID: "acc-race", PageSize: 100})
	if err != nil || len(list) != 1 {
		t.Errorf("account index lists %d jobs (err %v), want 1", len(list), err)
	}
}

func TestEventIsNotTurnedIntoASecondJobAfterTheFirstEnded(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, newJob(t, "j1", "acc-1", "evt-1", "contacts")); err != nil {
		t.Fatal(err)
	}
	finish(t, s, "j1")
	// A new request (no event) may erase the account again...
	j, created, err := s.Create(ctx, newJob(t, "j2", "acc-1", "", "contacts"))
	if err != nil || !created || j.ID != "j2" {
		t.Fatalf("new request after the job ended: %v %v %v", j, created, err)
	}
	finish(t, s, "j2")
	// ...but a redelivered event maps to its original job.
	j, created, err = s.Create(ctx, newJob(t, "j3", "acc-1", "evt-1", "contacts"))
	if err != nil || created || j.ID != "j1" {
		t.Fatalf("redelivered event = %s created %v err %v; want j1, false", j.ID, created, err)
	}
}

func finish(t *testing.T, s *jobstore.Store, id string) {
	t.Helper()
	_, err := s.Update(context.Background(), id, func(j *jobs.Job) error {
		for _, tk := range j.Tasks {
			if _, err := j.ApplyReport(jobs.Report{Task: tk.Key(), Generation: 1, Succeeded: true, At: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReportsAreAllApplied(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	cats := []string{"contacts", "logs", "billing", "backups"}
	if _, _, err := s.Create(ctx, newJob(t, "j1", "acc-1", "", cats...)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, c := range cats {
		for range 5 { // each report delivered five times at once
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Update(ctx, "j1", func(j *jobs.Job) error {
					_, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: c, Stage: "erase"}, Generation: 1, Succeeded: true, Items: int64(10 * (i + 1)), At: t0})
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	j, err := s.Get(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusCompleted || j.ItemsPurged() != 100 {
		t.Errorf("job %s with %d items, want completed with 100 (each report counted once)", j.Status, j.ItemsPurged())
	}
	done, _, err := s.List(ctx, jobstore.Filter{Status: jobs.StatusCompleted, PageSize: 10})
	if err != nil || len(done) != 1 {
		t.Errorf("status index: %d completed jobs (err %v), want 1", len(done), err)
	}
	running, _, _ := s.List(ctx, jobstore.Filter{Status: jobs.StatusRunning, PageSize: 10})
	if len(running) != 0 {
		t.Errorf("%d jobs still indexed as running", len(running))
	}
}

func TestDueIndexFollowsTaskStatus(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, newJob(t, "j1", "acc-1", "", "contacts", "logs")); err != nil {
		t.Fatal(err)
	}
	if due, err := s.Due(ctx, t0.Add(-time.Second), 10); err != nil || len(due) != 0 {
		t.Fatalf("due before their time: %v %v", due, err)
	}
	due, err := s.Due(ctx, t0, 10)
	if err != nil || len(due) != 2 || due[0].JobID != "j1" {
		t.Fatalf("due at t0 = %v (err %v), want both tasks", due, err)
	}
	next, ok, err := s.NextDue(ctx)
	if err != nil || !ok || !next.Equal(t0) {
		t.Fatalf("NextDue = %v %v %v", next, ok, err)
	}
	if _, err := s.Update(ctx, "j1", func(j *jobs.Job) error {
		_, err := j.MarkDispatched(due[0].Task, 1, t0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Due(ctx, t0, 10); len(due) != 1 {
		t.Errorf("after dispatching one task %d are due, want 1", len(due))
	}
}

func TestUpdateUnknownJob(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	_, err := s.Update(context.Background(), "nope", func(*jobs.Job) error { return nil })
	if !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Update(unknown) = %v, want ErrNotFound", err)
	}
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for i := range 7 {
		j := newJob(t, fmt.Sprintf("j%d", i), fmt.Sprintf("acc-%d", i%2), "", "contacts")
		j.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
		if _, _, err := s.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		if i < 5 {
			finish(t, s, j.ID) // frees the account for the next job
		}
	}
	var all []string
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := s.List(ctx, jobstore.Filter{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page {
			all = append(all, j.ID)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		token = next
	}
	if fmt.Sprint(all) != "[j6 j5 j4 j3 j2 j1 j0]" {
		t.Errorf("paged listing = %v, want newest first, each once", all)
	}
	got, _, err := s.List(ctx, jobstore.Filter{AccountID: "acc-0", Status: jobs.StatusCompleted, PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range got {
		ids = append(ids, j.ID)
	}
	if fmt.Sprint(ids) != "[j4 j2 j0]" {
		t.Errorf("account+status filter = %v, want [j4 j2 j0]", ids)
	}
	if _, _, err := s.List(ctx, jobstore.Filter{PageSize: 3, PageToken: "garbage!"}); !errors.Is(err, jobstore.ErrBadPageToken) {
		t.Errorf("bad token: %v", err)
	}
}

func TestReopeningAJobGuardsTheAccountAgain(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, newJob(t, "j1", "acc-1", "", "contacts")); err != nil {
		t.Fatal(err)
	}
	fail := func(j *jobs.Job) error {
		_, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "contacts", Stage: "erase"}, Generation: j.Tasks[0].Generation, ErrorCode: "x", Error: "x", At: t0})
		return err
	}
	if _, err := s.Update(ctx, "j1", fail); err != nil {
		t.Fatal(err)
	}
	replay := func(j *jobs.Job) error {
		_, err := j.Replay(jobs.ReplaySelector{}, "sre", "fixed", t0)
		return err
	}
	if _, err := s.Update(ctx, "j1", replay); err != nil {
		t.Fatal(err)
	}
	// While reopened, a new request returns it instead of a second job.
	j, created, err := s.Create(ctx, newJob(t, "j2", "acc-1", "", "contacts"))
	if err != nil || created || j.ID != "j1" {
		t.Fatalf("request during the replay = %s created %v (%v), want j1", j.ID, created, err)
	}
	if due, _ := s.Due(ctx, t0, 10); len(due) != 1 || due[0].JobID != "j1" {
		t.Errorf("due after replay = %v, want the replayed task", due)
	}
	// A job cannot be reopened while the account has another active job.
	if _, err := s.Update(ctx, "j1", fail); err != nil {
		t.Fatal(err)
	}
	if j, created, err := s.Create(ctx, newJob(t, "j3", "acc-1", "", "contacts")); err != nil || !created {
		t.Fatalf("new job after the replay failed again: %v created %v (%v)", j, created, err)
	}
	if _, err := s.Update(ctx, "j1", replay); !errors.Is(err, jobs.ErrConflict) || !strings.Contains(err.Error(), "another active job") {
		t.Errorf("reopen while j3 is active = %v, want ErrConflict", err)
	}
}
