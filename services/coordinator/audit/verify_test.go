package audit

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

func mustKey(t testing.TB, b byte) *Key {
	t.Helper()
	k, err := NewKey(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRing(t testing.TB, keys ...*Key) *KeyRing {
	t.Helper()
	r, err := NewKeyRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// writer appends entries as the recorder does: each at the next stream
// sequence, chained from the last message (Genesis after an unsigned one).
type writer struct {
	entries []Entry
}

func (w *writer) next() (uint64, Sum) {
	n := uint64(len(w.entries))
	if n == 0 {
		return 1, Genesis
	}
	return n + 1, ChainLink(w.entries[n-1].Header)
}

func (w *writer) signed(k *Key, i int) {
	seq, prev := w.next()
	subject := erasurev1.LifecycleSubject(fmt.Sprintf("job-%d", i%7))
	id := fmt.Sprintf("job-%d:event-%d", i%7, i)
	data := []byte(fmt.Sprintf("event %d", i))
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, id)
	SetSeal(h, Sign(k, prev, seq, subject, id, data))
	w.entries = append(w.entries, Entry{StreamSeq: seq, Subject: subject, Header: h, Data: data})
}

func (w *writer) unsigned(i int) {
	seq, _ := w.next()
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, fmt.Sprintf("plain-%d", i))
	w.entries = append(w.entries, Entry{StreamSeq: seq, Subject: erasurev1.LifecycleSubject("plain"), Header: h, Data: []byte("plain")})
}

// chainOf writes n signed entries with k.
func chainOf(k *Key, n int) []Entry {
	var w writer
	for i := range n {
		w.signed(k, i)
	}
	return w.entries
}

// clone deep-copies entries so that a case can change them.
func clone(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		h := nats.Header{}
		for k, v := range e.Header {
			h[k] = slices.Clone(v)
		}
		out[i] = Entry{StreamSeq: e.StreamSeq, Subject: e.Subject, Header: h, Data: bytes.Clone(e.Data)}
	}
	return out
}

// renumber gives entries consecutive stream sequences from 1, as a copy
// into a fresh stream does.
func renumber(es []Entry) []Entry {
	for i := range es {
		es[i].StreamSeq = uint64(i + 1)
	}
	return es
}

func TestVerify(t *testing.T) {
	k1, k2 := mustKey(t, 1), mustKey(t, 2)
	base := chainOf(k1, 20)
	// Entry 5 (index 4) from a second trail signed with the same key: a
	// signed entry at the same position, with another predecessor.
	var other writer
	for i := range 4 {
		other.signed(k1, 100+i)
	}
	other.signed(k1, 4)
	var rotated writer
	for i := range 10 {
		rotated.signed(k1, i)
	}
	for i := 10; i < 20; i++ {
		rotated.signed(k2, i)
	}
	var legacy writer
	for i := range 3 {
		legacy.unsigned(i)
	}
	for i := 3; i < 10; i++ {
		legacy.signed(k1, i)
	}
	var intruded writer
	for i := range 6 {
		intruded.signed(k1, i)
	}
	intruded.unsigned(6)
	intruded.unsigned(7)
	for i := 8; i < 12; i++ {
		intruded.signed(k1, i)
	}
	var allPlain writer
	for i := range 4 {
		allPlain.unsigned(i)
	}

	tests := []struct {
		name      string
		keys      *KeyRing
		give      func() []Entry
		fromStart bool
		wantOK    bool
		wantKind  Kind
		wantSeq   uint64 // the first problem's position
		wantCount uint64
		check     func(t *testing.T, r Report)
	}{
		{name: "intact", keys: mustRing(t, k1), give: func() []Entry { return base }, fromStart: true, wantOK: true,
			check: func(t *testing.T, r Report) {
				if r.Verified != 20 || r.Head == nil || r.Head.Seq != 20 || r.Head.Link != ChainLink(base[19].Header).String() {
					t.Errorf("verified %d, head %+v", r.Verified, r.Head)
				}
			}},
		{name: "edited data", keys: mustRing(t, k1), fromStart: true, wantKind: KindEdited, wantSeq: 8, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es[7].Data = []byte("event 7, but different")
			return es
		}},
		{name: "edited subject", keys: mustRing(t, k1), fromStart: true, wantKind: KindEdited, wantSeq: 3, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es[2].Subject = erasurev1.LifecycleSubject("job-other")
			return es
		}},
		{name: "edited event id", keys: mustRing(t, k1), fromStart: true, wantKind: KindEdited, wantSeq: 3, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es[2].Header.Set(jetstream.MsgIDHeader, "job-2:forged")
			return es
		}},
		{name: "edited position header", keys: mustRing(t, k1), fromStart: true, wantKind: KindEdited, wantSeq: 4, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es[3].Header.Set(erasurev1.HeaderAuditSeq, "40")
			return es
		}},
		{name: "unreadable audit header", keys: mustRing(t, k1), fromStart: true, wantKind: KindEdited, wantSeq: 6, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es[5].Header.Set(erasurev1.HeaderAuditMac, "not hex")
			return es
		}},
		{name: "deleted, sequence gap kept", keys: mustRing(t, k1), fromStart: true, wantKind: KindRemoved, wantSeq: 9, wantCount: 1, give: func() []Entry {
			return slices.Delete(clone(base), 8, 9)
		}, check: func(t *testing.T, r Report) {
			p, _ := r.FirstProblem()
			if p.MissingFrom != 9 || p.MissingTo != 9 || p.StreamSeq != 10 || p.EventID != "job-2:event-9" {
				t.Errorf("problem %+v", p)
			}
		}},
		{name: "deleted, copied without the gap", keys: mustRing(t, k1), fromStart: true, wantKind: KindRemoved, wantSeq: 9, wantCount: 1, give: func() []Entry {
			return renumber(slices.Delete(clone(base), 8, 9))
		}},
		{name: "three deleted", keys: mustRing(t, k1), fromStart: true, wantKind: KindRemoved, wantSeq: 12, wantCount: 1, give: func() []Entry {
			return renumber(slices.Delete(clone(base), 11, 14))
		}, check: func(t *testing.T, r Report) {
			if p, _ := r.FirstProblem(); p.MissingTo != 14 || !strings.Contains(p.Message, "entries 12 to 14 were removed: the trail goes on with entry 15") {
				t.Errorf("problem %+v", p)
			}
		}},
		{name: "head removed", keys: mustRing(t, k1), fromStart: true, wantKind: KindRemoved, wantSeq: 1, wantCount: 1, give: func() []Entry {
			return renumber(clone(base)[2:])
		}},
		{name: "swapped", keys: mustRing(t, k1), fromStart: true, wantKind: KindReordered, wantSeq: 11, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es[10], es[11] = es[11], es[10]
			return renumber(es)
		}, check: func(t *testing.T, r Report) {
			p, _ := r.FirstProblem()
			if p.StreamSeq != 12 || p.EventID != "job-3:event-10" || !strings.Contains(p.Message, "written before entry 12 but comes after it") {
				t.Errorf("problem %+v", p)
			}
		}},
		{name: "moved far back", keys: mustRing(t, k1), fromStart: true, wantKind: KindReordered, wantSeq: 4, wantCount: 1, give: func() []Entry {
			es := clone(base)
			moved := es[3]
			es = slices.Delete(es, 3, 4)
			es = slices.Insert(es, 15, moved)
			return renumber(es)
		}},
		{name: "copied in twice", keys: mustRing(t, k1), fromStart: true, wantKind: KindReordered, wantSeq: 6, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es = slices.Insert(es, 12, clone(es[5:6])[0])
			return renumber(es)
		}},
		{name: "replaced by a signed entry of another trail", keys: mustRing(t, k1), fromStart: true, wantKind: KindReplaced, wantSeq: 5, wantCount: 1, give: func() []Entry {
			es := clone(base)
			es[4] = clone(other.entries[4:5])[0]
			return es
		}},
		{name: "unsigned entries written in between", keys: mustRing(t, k1), fromStart: true, wantKind: KindUnsigned, wantSeq: 7, wantCount: 1,
			give: func() []Entry { return intruded.entries },
			check: func(t *testing.T, r Report) {
				if r.Verified != 10 || r.Checked != 12 {
					t.Errorf("verified %d of %d, want 10 of 12", r.Verified, r.Checked)
				}
			}},
		{name: "MAC stripped", keys: mustRing(t, k1), fromStart: true, wantKind: KindUnsigned, wantSeq: 10, wantCount: 1, give: func() []Entry {
			es := clone(base)
			for _, h := range []string{erasurev1.HeaderAuditSeq, erasurev1.HeaderAuditKey, erasurev1.HeaderAuditLink, erasurev1.HeaderAuditMac} {
				es[9].Header.Del(h)
			}
			return es
		}},
		{name: "MACs stripped from the head", keys: mustRing(t, k1), fromStart: true, wantKind: KindUnsigned, wantSeq: 1, wantCount: 1, give: func() []Entry {
			es := clone(base)
			for i := range 3 {
				for _, h := range []string{erasurev1.HeaderAuditSeq, erasurev1.HeaderAuditKey, erasurev1.HeaderAuditLink, erasurev1.HeaderAuditMac} {
					es[i].Header.Del(h)
				}
			}
			return es
		}, check: func(t *testing.T, r Report) {
			if p, _ := r.FirstProblem(); !strings.Contains(p.Message, "stripped") {
				t.Errorf("problem %+v", p)
			}
		}},
		{name: "unsigned before the key was set", keys: mustRing(t, k1), fromStart: true, wantOK: true,
			give: func() []Entry { return legacy.entries },
			check: func(t *testing.T, r Report) {
				if r.UnsignedBefore != 3 || r.Verified != 7 {
					t.Errorf("unsigned before %d, verified %d; want 3, 7", r.UnsignedBefore, r.Verified)
				}
			}},
		{name: "nothing signed", keys: mustRing(t, k1), fromStart: true, wantKind: KindUnsigned, wantSeq: 1, wantCount: 1,
			give: func() []Entry { return allPlain.entries }},
		{name: "wrong key", keys: mustRing(t, k2), fromStart: true, wantKind: KindKeyChanged, wantSeq: 1, wantCount: 1,
			give: func() []Entry { return base },
			check: func(t *testing.T, r Report) {
				if r.Verified != 0 || len(r.Keys) != 1 || r.Keys[0].Known || r.Keys[0].Entries != 20 {
					t.Errorf("verified %d, keys %+v", r.Verified, r.Keys)
				}
			}},
		{name: "rotated, both keys given", keys: mustRing(t, k2, k1), fromStart: true, wantOK: true,
			give: func() []Entry { return rotated.entries },
			check: func(t *testing.T, r Report) {
				want := []KeyUse{{ID: k1.ID(), FirstSeq: 1, Entries: 10, Known: true}, {ID: k2.ID(), FirstSeq: 11, Entries: 10, Known: true}}
				if !slices.Equal(r.Keys, want) || r.Verified != 20 {
					t.Errorf("keys %+v, want %+v; verified %d", r.Keys, want, r.Verified)
				}
			}},
		{name: "rotated, old key missing", keys: mustRing(t, k2), fromStart: true, wantKind: KindKeyChanged, wantSeq: 1, wantCount: 1,
			give: func() []Entry { return rotated.entries },
			check: func(t *testing.T, r Report) {
				// 11 to 20 verify (11's link to 10, signed with the
				// missing key, cannot be checked).
				if r.Verified != 10 {
					t.Errorf("verified %d, want 10", r.Verified)
				}
			}},
		{name: "edit and deletion in one trail", keys: mustRing(t, k1), fromStart: true, wantKind: KindEdited, wantSeq: 3, wantCount: 2, give: func() []Entry {
			es := clone(base)
			es[2].Data = []byte("changed")
			return renumber(slices.Delete(es, 14, 15))
		}, check: func(t *testing.T, r Report) {
			if len(r.Problems) != 2 || r.Problems[1].Kind != KindRemoved || r.Problems[1].Seq != 15 {
				t.Errorf("problems %+v", r.Problems)
			}
		}},
		{name: "tail cut off is not visible without the last head", keys: mustRing(t, k1), fromStart: true, wantOK: true,
			give: func() []Entry { return clone(base)[:15] },
			check: func(t *testing.T, r Report) {
				if r.Head.Seq != 15 {
					t.Errorf("head %+v, want position 15", r.Head)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Verify(tt.keys, tt.give(), tt.fromStart)
			if r.OK != tt.wantOK {
				t.Fatalf("ok = %v, want %v; problems %+v", r.OK, tt.wantOK, r.Problems)
			}
			if tt.wantOK {
				if len(r.Problems) != 0 {
					t.Errorf("problems %+v", r.Problems)
				}
			} else {
				p, ok := r.FirstProblem()
				if !ok || p.Kind != tt.wantKind || p.Seq != tt.wantSeq || r.ProblemCount != tt.wantCount {
					t.Fatalf("first problem %+v (of %d), want %s at %d (of %d); all: %+v", p, r.ProblemCount, tt.wantKind, tt.wantSeq, tt.wantCount, r.Problems)
				}
				if !strings.Contains(p.Message, "docs/runbook.md") {
					t.Errorf("message does not say where to go: %q", p.Message)
				}
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

// TestVerifierSeed checks a walk that starts in the middle: the first
// entry's link is checked against the seed.
func TestVerifierSeed(t *testing.T) {
	k := mustKey(t, 1)
	es := chainOf(k, 10)
	v := NewVerifier(mustRing(t, k), Options{})
	v.Seed(es[4])
	for _, e := range es[5:] {
		v.Add(e)
	}
	if r := v.Report(); !r.OK || r.Verified != 5 || r.FirstSeq != 6 {
		t.Fatalf("from the middle: %+v", r)
	}

	// The entry after the seed was replaced by one of another trail.
	var other writer
	for i := range 6 {
		other.signed(k, 50+i)
	}
	v = NewVerifier(mustRing(t, k), Options{})
	v.Seed(es[4])
	v.Add(other.entries[5])
	for _, e := range es[6:] {
		v.Add(e)
	}
	r := v.Report()
	if p, ok := r.FirstProblem(); !ok || p.Kind != KindReplaced || p.Seq != 6 {
		t.Fatalf("replaced after the seed: %+v", r.Problems)
	}
}

// TestVerifierBoundedMemory runs a long trail through a verifier and checks
// that it remembers a window, not every entry.
func TestVerifierBoundedMemory(t *testing.T) {
	k := mustKey(t, 3)
	var w writer
	v := NewVerifier(mustRing(t, k), Options{FromStart: true})
	const n = 2*window + 500
	for i := range n {
		w.signed(k, i)
		v.Add(w.entries[i])
		w.entries[i] = Entry{Header: w.entries[i].Header} // keep only what the writer needs
	}
	if r := v.Report(); !r.OK || r.Verified != n {
		t.Fatalf("report %+v", r)
	}
	if len(v.recent) > 2*window+1 {
		t.Errorf("remembers %d positions, want at most %d", len(v.recent), 2*window+1)
	}
}
