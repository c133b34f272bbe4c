package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
)

// TestBatchAfterAnotherWritersSameEventDoesNotFork sets up the race that
// makes per-message pipelining fork the chain: writer A believes the
// stream ends at entry 1 and publishes [x, y, z] as one batch, while
// writer B has meanwhile appended w and its own copy of y (the same event
// recorded by two coordinators, other bytes). Per message, x and y are
// refused, but z's expectations (last sequence 3, last event id y) hold
// for B's y, so z would be stored chained to A's x and y, which are not in
// the stream. Every entry must instead chain to the one before it.
func TestBatchAfterAnotherWritersSameEventDoesNotFork(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		t.Run(map[bool]string{false: "one at a time", true: "atomic batch"}[atomic], func(t *testing.T) {
			testNoFork(t, atomic)
		})
	}
}

func testNoFork(t *testing.T, atomic bool) {
	srv := testenv.StartNATS(t)
	_, jsA := srv.Connect(t)
	_, jsB := srv.Connect(t)
	for _, cfg := range topology.DefaultSettings().Streams() {
		if cfg.Name == erasurev1.LifecycleStream {
			if _, err := jsA.CreateOrUpdateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	k, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := audit.NewKeyRing(k)
	a := newChain(jsA, k, erasurev1.LifecycleStream, defaultMaxBatch)
	b := newChain(jsB, k, erasurev1.LifecycleStream, defaultMaxBatch)
	subject := erasurev1.LifecycleSubject("job-r")
	if err := a.record(t.Context(), subject, "job-r:e0", []byte("e0")); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []struct{ id, data string }{{"job-r:w", "w"}, {"job-r:y", "y as B saw it"}} {
		if err := b.record(t.Context(), subject, ev.id, []byte(ev.data)); err != nil {
			t.Fatal(err)
		}
	}
	if !a.synced || a.tail.seq != 1 {
		t.Fatalf("writer A should still believe the stream ends at 1: %+v", a.tail)
	}
	a.noAtomic = !atomic // a single server: one at a time unless forced
	var batch []*pending
	for _, ev := range []struct{ id, data string }{{"job-r:x", "x"}, {"job-r:y", "y as A saw it"}, {"job-r:z", "z"}} {
		batch = append(batch, &pending{ctx: t.Context(), subject: subject, id: ev.id, data: []byte(ev.data), done: make(chan error, 1)})
	}
	a.publish(context.Background(), batch)
	for _, p := range batch {
		if err := <-p.done; err != nil {
			t.Fatalf("event %s: %v", p.id, err)
		}
	}
	r, err := audit.Walk(t.Context(), jsA, ring, audit.WalkOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Checked != 5 || r.Verified != 5 {
		t.Fatalf("the chain forked: %+v", r.Problems)
	}
	if st := a.stats(); st.Stored != 3 || st.Duplicates != 1 || st.Conflicts == 0 {
		t.Errorf("writer A: %+v; want e0, x and z stored, y a duplicate, after a lost race", st)
	}
}

// TestAtomicBatchesOfTwoWriters has two writers append atomic batches at
// once (a single server takes them too, only slower than one at a time),
// with some events recorded by both: every id is stored once and the
// chain verifies.
func TestAtomicBatchesOfTwoWriters(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, jsA := srv.Connect(t)
	_, jsB := srv.Connect(t)
	for _, cfg := range topology.DefaultSettings().Streams() {
		if cfg.Name == erasurev1.LifecycleStream {
			if _, err := jsA.CreateOrUpdateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	k, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := audit.NewKeyRing(k)
	writers := []*chain{
		newChain(jsA, k, erasurev1.LifecycleStream, defaultMaxBatch),
		newChain(jsB, k, erasurev1.LifecycleStream, 8),
	}
	subject := erasurev1.LifecycleSubject("job-b")
	for i, w := range writers {
		if err := w.record(t.Context(), subject, fmt.Sprintf("job-b:start-%d", i), nil); err != nil {
			t.Fatal(err)
		}
		w.noAtomic = false
	}
	var wg sync.WaitGroup
	for i, w := range writers {
		for g := range 6 {
			wg.Go(func() {
				for n := range 30 {
					id := fmt.Sprintf("job-b:%d-%d-%d", i, g, n)
					if n%5 == 0 {
						id = fmt.Sprintf("job-b:shared-%d-%d", g, n)
					}
					if err := w.record(t.Context(), subject, id, []byte(fmt.Sprintf("writer %d", i))); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	r, err := audit.Walk(t.Context(), jsA, ring, audit.WalkOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const want = 2 + 2*6*24 + 6*6 // starts, own events, shared events once
	if !r.OK || r.Checked != want || r.Verified != want {
		t.Fatalf("checked %d, verified %d, want %d; problems %+v", r.Checked, r.Verified, want, r.Problems)
	}
	for i, w := range writers {
		t.Logf("writer %d: %+v", i, w.stats())
	}
}
