package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
		t.Run(map[bool]string{false: "pipelined", true: "atomic batch"}[atomic], func(t *testing.T) {
			testNoFork(t, atomic)
		})
	}
}

func testNoFork(t *testing.T, atomic bool) {
	f := newPipelineFixture(t)
	_, jsA := f.srv.Connect(t)
	_, jsB := f.srv.Connect(t)
	k, ring := f.key, f.ring
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
	a.noAtomic = !atomic // a single server: pipelined unless forced
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
	f := newPipelineFixture(t)
	_, jsA := f.srv.Connect(t)
	_, jsB := f.srv.Connect(t)
	k, ring := f.key, f.ring
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

// pipelineFixture is a single embedded nats-server with the lifecycle
// stream, a key, and a way to make writers on their own connections.
type pipelineFixture struct {
	t       *testing.T
	srv     *testenv.NATSServer
	key     *audit.Key
	ring    *audit.KeyRing
	subject string
}

func newPipelineFixture(t *testing.T) *pipelineFixture {
	t.Helper()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	for _, cfg := range topology.DefaultSettings().Streams() {
		if cfg.Name == erasurev1.LifecycleStream {
			if _, err := js.CreateOrUpdateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	k, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := audit.NewKeyRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pipelineFixture{t: t, srv: srv, key: k, ring: ring, subject: erasurev1.LifecycleSubject("job-p")}
}

// writer returns a chain on its own connection (another coordinator),
// synced with the stream: on a single server it pipelines.
func (f *pipelineFixture) writer(maxBatch int) *chain {
	f.t.Helper()
	_, js := f.srv.Connect(f.t)
	c := newChain(js, f.key, erasurev1.LifecycleStream, maxBatch)
	if err := c.resync(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
	if !c.noAtomic {
		f.t.Fatal("a single server should take the pipelined path")
	}
	return c
}

func (f *pipelineFixture) pendings(ctx context.Context, ids ...string) []*pending {
	var ps []*pending
	for _, id := range ids {
		ps = append(ps, &pending{ctx: ctx, subject: f.subject, id: "job-p:" + id, data: []byte("data of " + id), done: make(chan error, 1)})
	}
	return ps
}

func (f *pipelineFixture) record(c *chain, ids ...string) {
	f.t.Helper()
	for _, p := range f.pendings(f.t.Context(), ids...) {
		if err := c.record(f.t.Context(), p.subject, p.id, p.data); err != nil {
			f.t.Fatalf("record %s: %v", p.id, err)
		}
	}
}

// verify walks the chain and wants want entries, all verified.
func (f *pipelineFixture) verify(want uint64) {
	f.t.Helper()
	_, js := f.srv.Connect(f.t)
	r, err := audit.Walk(f.t.Context(), js, f.ring, audit.WalkOptions{}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if !r.OK || r.Checked != want || r.Verified != want {
		f.t.Fatalf("checked %d, verified %d, want %d; problems %+v", r.Checked, r.Verified, want, r.Problems)
	}
}

func waitAll(t *testing.T, ps []*pending) {
	t.Helper()
	for _, p := range ps {
		if err := <-p.done; err != nil {
			t.Fatalf("event %s: %v", p.id, err)
		}
	}
}

// TestPipelinedDuplicateInTheMiddle publishes a batch whose events are
// new except one already in the stream, first and in the middle: the
// duplicates settle as such, the chain does not move for them, and the
// events after them are signed again for the positions they get.
func TestPipelinedDuplicateInTheMiddle(t *testing.T) {
	f := newPipelineFixture(t)
	c := f.writer(defaultMaxBatch)
	f.record(c, "a", "b", "c")
	before := c.stats()
	batch := f.pendings(t.Context(), "b", "n1", "n2", "a", "n3", "c", "n4")
	c.publish(t.Context(), batch)
	waitAll(t, batch)
	st := c.stats()
	if got := st.Stored - before.Stored; got != 4 {
		t.Errorf("stored %d of the batch, want 4", got)
	}
	if got := st.Duplicates - before.Duplicates; got != 3 {
		t.Errorf("%d duplicates, want 3", got)
	}
	if st.Conflicts != 0 || st.Resyncs != before.Resyncs {
		t.Errorf("a duplicate counted as a lost race or read the tail back: %+v", st)
	}
	f.verify(7)
	if c.tail.seq != 7 || !c.synced {
		t.Errorf("tail %+v (synced %v), want the stream's last entry 7", c.tail, c.synced)
	}
}

// TestPipelinedAfterAnotherWritersCopyOfThePredecessor: writer B has
// stored its own copy of x where A signs its x. A's x is refused, but A's
// y, in flight behind it and expecting x by sequence and event id, is
// stored after B's x: that is only right because B chained its x to the
// same entry A did, which is why no more than two events are in flight.
func TestPipelinedAfterAnotherWritersCopyOfThePredecessor(t *testing.T) {
	f := newPipelineFixture(t)
	a := f.writer(defaultMaxBatch)
	b := f.writer(defaultMaxBatch)
	f.record(a, "e0")
	if err := b.resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.record(t.Context(), f.subject, "job-p:x", []byte("x as B saw it")); err != nil {
		t.Fatal(err)
	}
	if a.tail.seq != 1 {
		t.Fatalf("writer A should still believe the stream ends at 1: %+v", a.tail)
	}
	batch := f.pendings(t.Context(), "x", "y", "z")
	a.publish(t.Context(), batch)
	waitAll(t, batch)
	f.verify(4) // e0, B's x, y, z
	if st := a.stats(); st.Stored != 3 || st.Duplicates != 1 || st.Conflicts != 1 {
		t.Errorf("writer A: %+v; want e0, y and z stored, x a duplicate, one lost race", st)
	}
}

// TestPipelinedLostRace: another writer appended behind A's back. A's
// first event is refused for its sequence, the one in flight behind it for
// the event id it expects before it; both are a lost race, not an error
// (which would make the writer back off), and go again after the tail is
// read back.
func TestPipelinedLostRace(t *testing.T) {
	f := newPipelineFixture(t)
	a := f.writer(defaultMaxBatch)
	b := f.writer(defaultMaxBatch)
	f.record(a, "e0")
	if err := b.resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.record(b, "w")
	batch := f.pendings(t.Context(), "x", "y")
	retry, conflicted, err := a.send(t.Context(), batch)
	if err != nil || !conflicted || len(retry) != 2 || a.synced {
		t.Fatalf("send = %d to retry, conflicted %v, %v (synced %v); want both back after a lost race", len(retry), conflicted, err, a.synced)
	}
	if st := a.stats(); st.Conflicts != 1 {
		t.Errorf("%d conflicts, want 1: the second was refused because of the first", st.Conflicts)
	}
	a.publish(t.Context(), retry)
	waitAll(t, batch)
	f.verify(4)
}

// TestPipelinedBatchesOfTwoWriters has two writers pipeline batches into
// one chain at once, with some events recorded by both: every id is
// stored once and the chain verifies.
func TestPipelinedBatchesOfTwoWriters(t *testing.T) {
	f := newPipelineFixture(t)
	writers := []*chain{f.writer(defaultMaxBatch), f.writer(8)}
	var wg sync.WaitGroup
	for i, w := range writers {
		for g := range 6 {
			wg.Go(func() {
				for n := range 40 {
					id := fmt.Sprintf("%d-%d-%d", i, g, n)
					if n%4 == 0 {
						id = fmt.Sprintf("shared-%d-%d", g, n)
					}
					p := f.pendings(t.Context(), id)[0]
					if err := w.record(t.Context(), p.subject, p.id, []byte(fmt.Sprintf("writer %d", i))); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	f.verify(2*6*30 + 6*10) // own events, shared events once
	var stored, dups, batches uint64
	for i, w := range writers {
		st := w.stats()
		t.Logf("writer %d: %+v", i, st)
		stored, dups, batches = stored+st.Stored, dups+st.Duplicates, batches+st.Batches
	}
	if stored != 2*6*30+6*10 || dups != 6*10 {
		t.Errorf("stored %d and %d duplicates, want %d and %d", stored, dups, 2*6*30+6*10, 6*10)
	}
	if batches >= stored+dups {
		t.Errorf("%d batches for %d events: nothing went in a batch", batches, stored+dups)
	}
}

// TestPipelinedHolderGoneWhileInFlight: the caller publishing a batch
// leaves while its events are in flight (they are sent, their acks not
// read). The events go back to the queue, may or may not be stored, and
// the next caller settles them: each is stored once and the chain holds.
// One caller of the batch leaves too, after its event was sent.
func TestPipelinedHolderGoneWhileInFlight(t *testing.T) {
	f := newPipelineFixture(t)
	c := f.writer(defaultMaxBatch)
	f.record(c, "e0")
	gone, leave := context.WithCancel(t.Context())
	leave()
	batch := f.pendings(t.Context(), "a", "b", "c", "d")
	leaving := &onceLiveContext{Context: t.Context()}
	batch[2].ctx = leaving // still there when the batch is taken, gone after
	c.publish(gone, batch)
	f.record(c, "e1")
	for i, p := range batch {
		err := <-p.done
		switch {
		case i == 2 && errors.Is(err, context.Canceled):
		case i == 2 && err == nil: // stored before its caller left
		case err != nil:
			t.Fatalf("event %s: %v", p.id, err)
		}
	}
	_, js := f.srv.Connect(t)
	r, err := audit.Walk(t.Context(), js, f.ring, audit.WalkOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// e0, a, b, d, e1, and c if it was stored before its caller left.
	if !r.OK || r.Verified != r.Checked || r.Checked < 5 || r.Checked > 6 {
		t.Fatalf("checked %d, verified %d; problems %+v", r.Checked, r.Verified, r.Problems)
	}
}

// onceLiveContext is alive the first time it is asked and cancelled from
// then on: a caller that leaves just after its event was taken into a
// batch, at no particular moment the test could otherwise pick.
type onceLiveContext struct {
	context.Context
	asked atomic.Bool
}

func (c *onceLiveContext) Err() error {
	if c.asked.Swap(true) {
		return context.Canceled
	}
	return nil
}
