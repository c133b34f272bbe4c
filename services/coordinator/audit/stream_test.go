package audit_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// lifecycleStream creates the lifecycle stream as the coordinator does.
func lifecycleStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for _, cfg := range topology.DefaultSettings().Streams() {
		if cfg.Name == erasurev1.LifecycleStream {
			if _, err := js.CreateOrUpdateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("the topology has no lifecycle stream")
}

func keyRing(t *testing.T) *audit.KeyRing {
	t.Helper()
	k, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.NewKeyRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func event(job string, n int, note string) *erasurev1.LifecycleEvent {
	return &erasurev1.LifecycleEvent{
		EventId: fmt.Sprintf("%s:task:%d", job, n),
		Type:    erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED,
		JobId:   job,
		Actor:   "coordinator",
		Reason:  note,
	}
}

// stored reads every message of a stream.
func stored(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// TestConcurrentRecordersKeepOneChain has two coordinators' recorders (one
// connection each) record concurrently. Each goroutine records events of
// its own job, repeats some, and records some that a goroutine of the
// other recorder records too, with other bytes (a report handled by both
// coordinators): every event id must be stored once, the chain come out
// serial (every entry's position is its stream sequence) and verify.
func TestConcurrentRecordersKeepOneChain(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, jsA := srv.Connect(t)
	_, jsB := srv.Connect(t)
	lifecycleStream(t, jsA)
	keys := keyRing(t)
	recs := []*lifecycle.Recorder{
		lifecycle.NewRecorder(jsA, lifecycle.WithAuditKey(keys.Signing())),
		lifecycle.NewRecorder(jsB, lifecycle.WithAuditKey(keys.Signing()), lifecycle.WithMaxBatch(16)),
	}
	const goroutines, events = 6, 60
	var wg sync.WaitGroup
	for r, rec := range recs {
		for g := range goroutines {
			wg.Go(func() {
				own, shared := fmt.Sprintf("job-%d-%d", r, g), fmt.Sprintf("job-shared-%d", g)
				for n := range events {
					evs := []*erasurev1.LifecycleEvent{event(own, n, "")}
					if n%10 == 9 {
						evs = append(evs, event(own, n-5, "again"), event(shared, n, "recorder "+strconv.Itoa(r)))
					}
					for _, ev := range evs {
						if err := rec.Record(t.Context(), ev); err != nil {
							t.Errorf("record: %v", err)
							return
						}
					}
				}
			})
		}
	}
	wg.Wait()
	const unique = 2*goroutines*events + goroutines*events/10
	for i, rec := range recs {
		t.Logf("recorder %d: %+v", i, rec.ChainStats())
	}

	msgs := stored(t, jsA, erasurev1.LifecycleStream)
	if len(msgs) != unique {
		t.Fatalf("%d messages stored, want %d (one per event id)", len(msgs), unique)
	}
	for _, m := range msgs {
		if got := m.Header.Get(erasurev1.HeaderAuditSeq); got != strconv.FormatUint(m.Sequence, 10) {
			t.Fatalf("message %d carries position %q: the chain is not serial", m.Sequence, got)
		}
	}
	var progress []audit.Progress
	r, err := audit.Walk(t.Context(), jsA, keys, audit.WalkOptions{ProgressEvery: 100}, func(p audit.Progress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || !r.Complete || r.Checked != uint64(len(msgs)) || r.Verified != r.Checked || r.Head.Seq != uint64(len(msgs)) {
		t.Fatalf("report %+v", r)
	}
	if len(progress) != len(msgs)/100+1 || progress[len(progress)-1].Checked != uint64(len(msgs)) {
		t.Errorf("progress %+v", progress)
	}
	var sum uint64
	for _, rec := range recs {
		st := rec.ChainStats()
		sum += st.Stored
	}
	if sum != uint64(len(msgs)) {
		t.Errorf("the recorders stored %d, the stream holds %d", sum, len(msgs))
	}
}

// copyCase builds a tampered copy of the trail's messages.
type copyCase struct {
	name     string
	edit     func(msgs []*jetstream.RawStreamMsg) []*jetstream.RawStreamMsg
	deleteAt uint64 // delete this stream sequence from the copy afterwards
	keys     func(own *audit.KeyRing) *audit.KeyRing
	wantOK   bool
	wantKind audit.Kind
	wantSeq  uint64
	wantID   string // the event id the first problem names
	// wantVerified, when not 0, is how many entries verify in a good copy
	// (default: all).
	wantVerified uint64
}

// TestTamperedCopiesNameTheEntry records a trail, copies its messages into
// a fresh stream (named otherwise, on another server, without deny-delete)
// with one change each, and checks that verification names the changed
// entry and what happened to it.
func TestTamperedCopiesNameTheEntry(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	lifecycleStream(t, js)
	keys := keyRing(t)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(keys.Signing()))
	const n = 30
	for i := range n {
		if err := rec.Record(t.Context(), event(fmt.Sprintf("job-%d", i%4), i, "")); err != nil {
			t.Fatal(err)
		}
	}
	original := stored(t, js, erasurev1.LifecycleStream)
	if r, err := audit.Walk(t.Context(), js, keys, audit.WalkOptions{}, nil); err != nil || !r.OK || r.Verified != n {
		t.Fatalf("original: %+v, %v", r, err)
	}
	idOf := func(i int) string { return fmt.Sprintf("job-%d:task:%d", i%4, i) }
	other := keyRing(t)

	tests := []copyCase{
		{name: "faithful copy", wantOK: true},
		{name: "edited", wantKind: audit.KindEdited, wantSeq: 12, wantID: idOf(11), edit: func(ms []*jetstream.RawStreamMsg) []*jetstream.RawStreamMsg {
			ms[11].Data = append(slices.Clone(ms[11].Data), 0x08, 0x01) // one more field
			return ms
		}},
		{name: "deleted while copying", wantKind: audit.KindRemoved, wantSeq: 12, wantID: idOf(12), edit: func(ms []*jetstream.RawStreamMsg) []*jetstream.RawStreamMsg {
			return slices.Delete(ms, 11, 12)
		}},
		{name: "deleted from the copy", deleteAt: 12, wantKind: audit.KindRemoved, wantSeq: 12, wantID: idOf(12)},
		// No chain shows a cut-off end (the head does); the walk must end.
		{name: "last deleted from the copy", deleteAt: n, wantOK: true, wantVerified: n - 1},
		{name: "swapped", wantKind: audit.KindReordered, wantSeq: 12, wantID: idOf(11), edit: func(ms []*jetstream.RawStreamMsg) []*jetstream.RawStreamMsg {
			ms[11], ms[12] = ms[12], ms[11]
			return ms
		}},
		{name: "unsigned entry slipped in", wantKind: audit.KindUnsigned, wantSeq: 13, wantID: "forged:1", edit: func(ms []*jetstream.RawStreamMsg) []*jetstream.RawStreamMsg {
			forged := &jetstream.RawStreamMsg{Subject: erasurev1.LifecycleSubject("job-1"), Header: nats.Header{jetstream.MsgIDHeader: {"forged:1"}}, Data: []byte("forged")}
			return slices.Insert(ms, 12, forged)
		}},
		{name: "checked with another key", keys: func(*audit.KeyRing) *audit.KeyRing { return other }, wantKind: audit.KindKeyChanged, wantSeq: 1, wantID: idOf(0)},
	}
	copies := testenv.StartNATS(t)
	_, cjs := copies.Connect(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const name = "LIFECYCLE_COPY"
			msgs := make([]*jetstream.RawStreamMsg, len(original))
			for i, m := range original {
				c := *m
				c.Header = nats.Header{}
				for k, v := range m.Header {
					// The writer's expectations held in the original
					// stream, not in the copy.
					if !strings.HasPrefix(k, "Nats-Expected-") {
						c.Header[k] = slices.Clone(v)
					}
				}
				msgs[i] = &c
			}
			if tt.edit != nil {
				msgs = tt.edit(msgs)
			}
			s, err := cjs.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{erasurev1.LifecycleSubjectPrefix + ">"}, Storage: jetstream.MemoryStorage})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cjs.DeleteStream(context.Background(), name) })
			for _, m := range msgs {
				if _, err := cjs.PublishMsg(t.Context(), &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.deleteAt != 0 {
				if err := s.DeleteMsg(t.Context(), tt.deleteAt); err != nil {
					t.Fatal(err)
				}
			}
			ring := keys
			if tt.keys != nil {
				ring = tt.keys(keys)
			}
			r, err := audit.Walk(t.Context(), cjs, ring, audit.WalkOptions{Stream: name}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Stream != name || !r.Complete {
				t.Errorf("stream %q complete %v", r.Stream, r.Complete)
			}
			if tt.wantOK {
				want := uint64(n)
				if tt.wantVerified != 0 {
					want = tt.wantVerified
				}
				if !r.OK || r.Verified != want {
					t.Fatalf("report %+v", r)
				}
				return
			}
			p, ok := r.FirstProblem()
			if r.OK || !ok || p.Kind != tt.wantKind || p.Seq != tt.wantSeq || p.EventID != tt.wantID || r.ProblemCount != 1 {
				t.Fatalf("first problem %+v of %d, want %s at %d naming %s", p, r.ProblemCount, tt.wantKind, tt.wantSeq, tt.wantID)
			}
			t.Logf("%s: %s", p.Kind, p.Message)
		})
	}
}

// TestWalkInPages walks the trail in two parts: the second starts from the
// middle, checking its first entry against the one before.
func TestWalkInPages(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	lifecycleStream(t, js)
	keys := keyRing(t)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(keys.Signing()))
	for i := range 25 {
		if err := rec.Record(t.Context(), event("job-p", i, "")); err != nil {
			t.Fatal(err)
		}
	}
	first, err := audit.Walk(t.Context(), js, keys, audit.WalkOptions{Limit: 10}, nil)
	if err != nil || !first.OK || first.Complete || first.NextSeq != 11 || first.Checked != 10 {
		t.Fatalf("first page %+v, %v", first, err)
	}
	rest, err := audit.Walk(t.Context(), js, keys, audit.WalkOptions{FromSeq: first.NextSeq}, nil)
	if err != nil || !rest.OK || !rest.Complete || rest.Checked != 15 || rest.FirstSeq != 11 || rest.Head.Seq != 25 {
		t.Fatalf("rest %+v, %v", rest, err)
	}
	empty, err := audit.Walk(t.Context(), js, keys, audit.WalkOptions{FromSeq: 99}, nil)
	if err != nil || !empty.OK || empty.Checked != 0 {
		t.Fatalf("past the end %+v, %v", empty, err)
	}
}

// TestUnsignedWriterInBetween has a recorder without the key write while
// a signed one does: the signed entries must still chain (across the
// unsigned ones), and only the unsigned ones be reported.
func TestUnsignedWriterInBetween(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	lifecycleStream(t, js)
	keys := keyRing(t)
	signed := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(keys.Signing()))
	plain := lifecycle.NewRecorder(js)
	if err := signed.Record(t.Context(), event("job-s", 0, "")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g, rec := range []*lifecycle.Recorder{signed, signed, plain} {
		wg.Go(func() {
			for i := 1; i <= 40; i++ {
				if err := rec.Record(t.Context(), event(fmt.Sprintf("job-%d", g), i, "")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	r, err := audit.Walk(t.Context(), js, keys, audit.WalkOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Checked != 121 || r.Verified != 81 || r.OK {
		t.Fatalf("checked %d, verified %d, ok %v; want 121, 81, false", r.Checked, r.Verified, r.OK)
	}
	for _, p := range r.Problems {
		if p.Kind != audit.KindUnsigned {
			t.Errorf("problem %+v, want only unsigned ones", p)
		}
	}
}

// TestRecordGivesUp checks that Record returns when its context ends while
// the broker is gone.
func TestRecordGivesUp(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	lifecycleStream(t, js)
	keys := keyRing(t)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(keys.Signing()))
	if err := rec.Record(t.Context(), event("job-g", 0, "")); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := rec.Record(ctx, event("job-g", 1, "")); err == nil {
		t.Fatal("Record succeeded with the broker gone")
	}
}
