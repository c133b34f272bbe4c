package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

func TestRebuilderOnEmpty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	settings := topology.DefaultSettings()
	settings.Categories = []string{"contacts"}
	if err := topology.Ensure(ctx, js, settings); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	store := jobstore.New(rdb, prefix)
	woken := 0
	r := NewRebuilder(ctx, js, store, zaptest.NewLogger(t), func() { woken++ })
	r.waitPoll = 20 * time.Millisecond

	// A new deployment: nothing to rebuild from.
	if err := r.OnEmpty(ctx); err != nil || woken != 0 {
		t.Fatalf("OnEmpty with an empty stream = %v (woken %d), want nothing done", err, woken)
	}

	svc := NewService(store, lifecycle.NewRecorder(js), Config{Categories: []string{"contacts"}}.Plan(), nil)
	j, _, err := svc.RequestErasure(ctx, jobs.Request{AccountID: "acc-1", Origin: jobs.OriginAPI, RequestedBy: "privacy:ops", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	// Redis holds the job: nothing to do.
	if err := r.OnEmpty(ctx); err != nil || woken != 0 {
		t.Fatalf("OnEmpty with a full Redis = %v (woken %d)", err, woken)
	}

	// Redis lost its data; another coordinator is rebuilding: wait for it.
	rdb.Del(ctx, prefix+"job:"+j.ID, prefix+"idx:all", prefix+"idx:account:acc-1", prefix+"idx:status:running", prefix+"active:acc-1", prefix+"due")
	other, err := store.TryLock(ctx, "rebuild", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rebuild(ctx); !errors.Is(err, jobstore.ErrLocked) {
		t.Fatalf("Rebuild while another runs = %v, want ErrLocked", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.OnEmpty(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("OnEmpty returned (%v) while another coordinator was rebuilding", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The other one finishes: its result is used, not rebuilt again.
	if err := store.Put(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || woken != 0 {
		t.Fatalf("OnEmpty after the other rebuild = %v (woken %d), want it to start without rebuilding", err, woken)
	}

	// Lost again, nobody rebuilding: this one does.
	rdb.Del(ctx, prefix+"job:"+j.ID, prefix+"idx:all")
	if err := r.OnEmpty(ctx); err != nil || woken != 1 {
		t.Fatalf("OnEmpty = %v (woken %d), want one rebuild", err, woken)
	}
	got, err := store.Get(ctx, j.ID)
	if err != nil || got.AccountID != "acc-1" {
		t.Fatalf("job after the rebuild: %v, %v", got, err)
	}
	if n := rdb.Exists(ctx, prefix+"lock:rebuild").Val(); n != 0 {
		t.Error("the rebuild lock was not released")
	}
}
