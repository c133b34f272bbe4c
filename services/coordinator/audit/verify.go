package audit

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
)

// Kind says what is wrong with an entry of the trail.
type Kind string

// The kinds of problem Verify names.
const (
	// KindEdited: the entry's content (data, subject, event id) or its
	// audit headers changed after it was written; the entries around it
	// are intact.
	KindEdited Kind = "edited"
	// KindRemoved: positions are missing before the entry.
	KindRemoved Kind = "removed"
	// KindReordered: the entry is not where it was written: it comes after
	// entries written later (moved, or copied in twice).
	KindReordered Kind = "reordered"
	// KindReplaced: the entry is signed and intact but not chained to the
	// entry before it: one of the two was replaced by an entry of another
	// trail signed with the same key (or two writers forked the chain,
	// which the writer's expected-last-sequence guard rules out).
	KindReplaced Kind = "replaced"
	// KindUnsigned: the entry carries no MAC although signed entries came
	// before it, or its MAC was stripped.
	KindUnsigned Kind = "unsigned"
	// KindKeyChanged: the entry is signed with a key the check was not
	// given (a rotation whose old key is missing, or another signer).
	KindKeyChanged Kind = "key_changed"
)

// Entry is one message of the trail as the stream holds it.
type Entry struct {
	// StreamSeq is the message's sequence in the stream being checked. It
	// equals the entry's position in the original stream; in a copy it may
	// not (Verify goes by the positions the entries carry).
	StreamSeq uint64
	Subject   string
	Header    nats.Header
	Data      []byte
}

// Problem is an entry that does not verify.
type Problem struct {
	Kind Kind `json:"kind"`
	// Seq is the entry's position in the trail; for KindRemoved the first
	// missing position (MissingFrom).
	Seq uint64 `json:"seq"`
	// StreamSeq is where in the checked stream it showed: the entry itself,
	// or for KindRemoved the entry after the missing ones.
	StreamSeq uint64 `json:"stream_seq"`
	// Subject and EventID are the entry's (for KindRemoved: the entry
	// after the missing ones).
	Subject string `json:"subject,omitempty"`
	EventID string `json:"event_id,omitempty"`
	// MissingFrom and MissingTo bound the missing positions of KindRemoved.
	MissingFrom uint64 `json:"missing_from,omitempty"`
	MissingTo   uint64 `json:"missing_to,omitempty"`
	// Message says in plain words what happened and what to do.
	Message string `json:"message"`

	detail      string // edited: which header was unreadable
	keyID       string // key_changed: the unknown key
	stripped    bool   // unsigned: a run whose successor was chained to a signed entry
	allUnsigned bool   // unsigned: no entry at all is signed
	entryPos    uint64 // removed: the position of the entry after the gap
	before      uint64 // reordered (from a gap): the earlier position it precedes
}

// KeyUse is one key the trail's entries name.
type KeyUse struct {
	ID string `json:"id"`
	// FirstSeq is the position of the first entry it signed.
	FirstSeq uint64 `json:"first_seq"`
	Entries  uint64 `json:"entries"`
	// Known says whether the check held this key.
	Known bool `json:"known"`
}

// Head is the last entry whose MAC and link held: note its position and
// link; a later check that does not show the same link at that position
// means the trail was cut back (see docs/runbook.md).
type Head struct {
	Seq       uint64 `json:"seq"`
	StreamSeq uint64 `json:"stream_seq"`
	Link      string `json:"link"`
	KeyID     string `json:"key_id"`
}

// Report is the outcome of a check.
type Report struct {
	// Stream is the stream checked (empty for Verify).
	Stream string `json:"stream,omitempty"`
	// OK is true when no problem was found.
	OK bool `json:"ok"`
	// Checked entries, from stream sequence FirstSeq to LastSeq.
	Checked  uint64 `json:"checked"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Verified entries had a good MAC and link.
	Verified uint64 `json:"verified"`
	// UnsignedBefore counts unsigned entries before the first signed one:
	// written before the coordinator had an audit key. They are not
	// protected, and not counted as problems.
	UnsignedBefore uint64 `json:"unsigned_before_first_signed,omitempty"`
	// Keys lists the keys that signed the entries, in order of first use.
	Keys []KeyUse `json:"keys,omitempty"`
	Head *Head    `json:"head,omitempty"`
	// Complete is false when a limit stopped the check before the last
	// entry that was in the stream when it started; NextSeq is then the
	// stream sequence to go on from.
	Complete bool   `json:"complete"`
	NextSeq  uint64 `json:"next_seq,omitempty"`
	// Problems lists the first MaxProblems problems in stream order;
	// ProblemCount counts them all.
	Problems     []Problem `json:"problems,omitempty"`
	ProblemCount uint64    `json:"problem_count"`
}

// FirstProblem returns the first problem in stream order, if any.
func (r Report) FirstProblem() (Problem, bool) {
	if len(r.Problems) == 0 {
		return Problem{}, false
	}
	return r.Problems[0], true
}

// Tuning of a Verifier's memory: problems kept, positions remembered for
// the chain check, open gaps tracked.
const (
	MaxProblems = 100
	window      = 4096
	maxGaps     = 1024
)

// Options of a Verifier.
type Options struct {
	// FromStart says that the first entry given is the first message of
	// the stream, so that positions before it are missing, not merely
	// outside the check.
	FromStart bool
}

// Verifier checks entries given in stream order. It holds a bounded
// window of recent positions, so it can check a trail of any length; an
// entry moved farther than that window is still reported as reordered, but
// its chain link is not checked. Not safe for concurrent use.
type Verifier struct {
	keys *KeyRing
	opts Options

	checked, verified, unsigned, unsignedBefore uint64
	firstSeq, lastSeq                           uint64
	anySigned                                   bool
	havePos                                     bool
	maxPos                                      uint64
	prev                                        *node
	recent                                      map[uint64]*node
	fillers                                     uint64 // unsigned entries since the last positioned one
	gaps                                        []gap
	problems                                    []Problem
	problemCount                                uint64
	keyUses                                     []KeyUse
	keyIdx                                      map[string]int
	head                                        *Head
}

// node is what the chain check remembers of an entry.
type node struct {
	pos uint64
	// link is the entry's link; successors of an unsigned entry chain
	// from Genesis.
	link   Sum
	signed bool
	// trusted: the entry's seal checked out (or it is unsigned, whose
	// successor's link is known), so a successor's link can be checked
	// against it. An entry already reported is not trusted, so that one
	// change is reported once.
	trusted bool
	run     *unsignedRun
}

// unsignedRun is a run of consecutive unsigned entries.
type unsignedRun struct {
	streamSeq, pos   uint64
	subject, eventID string
	reported         bool
}

// gap is a run of missing positions and the problem that reported it.
type gap struct {
	from, to uint64
	problem  int // index in problems, -1 if not kept
}

// NewVerifier returns a verifier with keys.
func NewVerifier(keys *KeyRing, opts Options) *Verifier {
	return &Verifier{keys: keys, opts: opts, recent: make(map[uint64]*node), keyIdx: make(map[string]int)}
}

// Verify checks entries, given in stream order, and reports; fromStart
// says whether the first is the stream's first message.
func Verify(keys *KeyRing, entries []Entry, fromStart bool) Report {
	v := NewVerifier(keys, Options{FromStart: fromStart})
	for _, e := range entries {
		v.Add(e)
	}
	r := v.Report()
	r.Complete = true
	return r
}

// Seed gives the verifier the entry just before the first one to check,
// when a check starts in the middle of a stream: the first entry's link
// is checked against it. The seed is neither counted nor reported.
func (v *Verifier) Seed(e Entry) {
	id := EventID(e.Header)
	s, err := ParseSeal(e.Header)
	n := &node{pos: e.StreamSeq, trusted: true}
	switch {
	case errors.Is(err, ErrUnsigned):
		n.run = &unsignedRun{streamSeq: e.StreamSeq, pos: e.StreamSeq, subject: e.Subject, eventID: id, reported: true}
	case err != nil:
		n.signed, n.trusted = true, false
		v.anySigned = true
	default:
		k := v.keys.Lookup(s.KeyID)
		n.pos, n.link, n.signed = s.Seq, s.Link, true
		n.trusted = k != nil && checkMac(k, s, e.Subject, id, e.Data)
		v.anySigned = true
	}
	v.maxPos, v.havePos = n.pos, true
	v.remember(n)
}

// Add checks the next entry of the stream.
func (v *Verifier) Add(e Entry) {
	v.checked++
	if v.firstSeq == 0 {
		v.firstSeq = e.StreamSeq
	}
	v.lastSeq = e.StreamSeq
	id := EventID(e.Header)
	inferred := e.StreamSeq
	if v.prev != nil {
		inferred = v.prev.pos + 1
	}
	s, err := ParseSeal(e.Header)
	var n *node
	switch {
	case errors.Is(err, ErrUnsigned):
		n = &node{pos: inferred, trusted: true}
		if v.prev != nil && !v.prev.signed && v.prev.run != nil {
			n.run = v.prev.run
		} else {
			n.run = &unsignedRun{streamSeq: e.StreamSeq, pos: inferred, subject: e.Subject, eventID: id}
		}
		if v.anySigned {
			v.unsigned++
			if !n.run.reported {
				n.run.reported = true
				v.report(Problem{Kind: KindUnsigned, Seq: inferred, StreamSeq: e.StreamSeq, Subject: e.Subject, EventID: id})
			}
		} else {
			v.unsignedBefore++
		}
		// An unsigned entry takes a stream position in the original
		// stream, but its own position is unknown: it explains one missing
		// position at most (see order).
		v.fillers++
	case err != nil:
		v.anySigned = true
		n = &node{pos: inferred, signed: true}
		v.report(Problem{Kind: KindEdited, Seq: inferred, StreamSeq: e.StreamSeq, Subject: e.Subject, EventID: id, detail: err.Error()})
		v.order(n.pos, e, id, false)
	default:
		v.anySigned = true
		k := v.keys.Lookup(s.KeyID)
		first := v.useKey(s.KeyID, s.Seq, k != nil)
		switch {
		case k == nil:
			n = &node{pos: s.Seq, link: s.Link, signed: true}
			if first {
				v.report(Problem{Kind: KindKeyChanged, Seq: s.Seq, StreamSeq: e.StreamSeq, Subject: e.Subject, EventID: id, keyID: s.KeyID})
			}
			v.order(n.pos, e, id, false)
		case !checkMac(k, s, e.Subject, id, e.Data):
			// The claimed position is not to be believed either.
			n = &node{pos: inferred, link: s.Link, signed: true}
			v.report(Problem{Kind: KindEdited, Seq: inferred, StreamSeq: e.StreamSeq, Subject: e.Subject, EventID: id})
			v.order(n.pos, e, id, false)
		default:
			n = &node{pos: s.Seq, link: s.Link, signed: true, trusted: true}
			v.order(n.pos, e, id, true)
			if v.checkChain(k, s, e, id) {
				v.verified++
				v.head = &Head{Seq: s.Seq, StreamSeq: e.StreamSeq, Link: s.Link.String(), KeyID: s.KeyID}
			} else {
				n.trusted = false
			}
		}
	}
	v.remember(n)
}

// checkChain checks an authentic entry's link against the entry at the
// position before it, when that one was seen. It reports what it finds
// and returns whether the link held (or could not be checked).
func (v *Verifier) checkChain(k *Key, s Seal, e Entry, id string) bool {
	pred, ok := v.recent[s.Seq-1]
	switch {
	case !ok && s.Seq == 1:
		pred = &node{trusted: true} // the first entry chains from Genesis
	case !ok:
		return true // missing (reported as removed) or outside the check
	case !pred.trusted:
		return true // reported already
	}
	prev := Genesis
	if pred.signed {
		prev = pred.link
	}
	if checkLink(k, prev, s, e.Subject, id) {
		return true
	}
	if !pred.signed && pred.run != nil {
		// The entries before it were chained to, so they were signed.
		if !pred.run.reported {
			pred.run.reported = true
			r := pred.run
			v.report(Problem{Kind: KindUnsigned, Seq: r.pos, StreamSeq: r.streamSeq, Subject: r.subject, EventID: r.eventID, stripped: true})
		}
		return false
	}
	v.report(Problem{Kind: KindReplaced, Seq: s.Seq, StreamSeq: e.StreamSeq, Subject: e.Subject, EventID: id})
	return false
}

// order checks that positions rise one by one. loud entries (authentic
// ones) report gaps and reorderings; the others only fill what they can.
// The unsigned entries just before pos may stand in the gap before it.
func (v *Verifier) order(pos uint64, e Entry, id string, loud bool) {
	fillers := v.fillers
	v.fillers = 0
	if !v.havePos {
		v.havePos, v.maxPos = true, pos
		if loud && v.opts.FromStart && pos > 1+fillers {
			v.openGap(1+fillers, pos-1, e, id)
		}
		return
	}
	switch {
	case pos == v.maxPos+1:
		v.maxPos = pos
	case pos > v.maxPos+1:
		if loud && pos > v.maxPos+1+fillers {
			v.openGap(v.maxPos+1+fillers, pos-1, e, id)
		}
		v.maxPos = pos
	default:
		if v.fillGap(pos, e, id) || !loud {
			return
		}
		v.report(Problem{Kind: KindReordered, Seq: pos, StreamSeq: e.StreamSeq, Subject: e.Subject, EventID: id})
	}
}

func (v *Verifier) openGap(from, to uint64, e Entry, id string) {
	idx := v.report(Problem{Kind: KindRemoved, Seq: from, StreamSeq: e.StreamSeq, Subject: e.Subject, EventID: id, MissingFrom: from, MissingTo: to, entryPos: to + 1})
	if len(v.gaps) == maxGaps {
		v.gaps = v.gaps[1:]
	}
	v.gaps = append(v.gaps, gap{from: from, to: to, problem: idx})
}

// fillGap takes pos out of the open gap holding it, if any: the entry at
// pos, e, was not removed but comes late, so the gap's problem becomes a
// reordering that names it.
func (v *Verifier) fillGap(pos uint64, e Entry, id string) bool {
	for i, g := range v.gaps {
		if pos < g.from || pos > g.to {
			continue
		}
		if g.problem >= 0 && v.problems[g.problem].Kind == KindRemoved {
			p := &v.problems[g.problem]
			p.Kind, p.Seq, p.before = KindReordered, pos, p.entryPos
			p.StreamSeq, p.Subject, p.EventID = e.StreamSeq, e.Subject, id
			p.MissingFrom, p.MissingTo = 0, 0
		}
		var rest []gap
		if pos > g.from {
			rest = append(rest, gap{from: g.from, to: pos - 1, problem: g.problem})
		}
		if pos < g.to {
			rest = append(rest, gap{from: pos + 1, to: g.to, problem: g.problem})
		}
		v.gaps = slices.Replace(v.gaps, i, i+1, rest...)
		return true
	}
	return false
}

// report records p and returns its index in problems, or -1 when the list
// is full.
func (v *Verifier) report(p Problem) int {
	v.problemCount++
	if len(v.problems) >= MaxProblems {
		return -1
	}
	v.problems = append(v.problems, p)
	return len(v.problems) - 1
}

// useKey counts an entry signed by id and reports whether it is the
// key's first.
func (v *Verifier) useKey(id string, pos uint64, known bool) bool {
	if i, ok := v.keyIdx[id]; ok {
		v.keyUses[i].Entries++
		return false
	}
	v.keyIdx[id] = len(v.keyUses)
	v.keyUses = append(v.keyUses, KeyUse{ID: id, FirstSeq: pos, Entries: 1, Known: known})
	return true
}

func (v *Verifier) remember(n *node) {
	v.prev = n
	v.recent[n.pos] = n
	if len(v.recent) > 2*window {
		for p := range v.recent {
			if p+window < v.maxPos {
				delete(v.recent, p)
			}
		}
	}
}

// Report returns what the entries added so far showed. Complete and
// NextSeq are the caller's to set.
func (v *Verifier) Report() Report {
	r := Report{
		Checked: v.checked, FirstSeq: v.firstSeq, LastSeq: v.lastSeq, Verified: v.verified,
		UnsignedBefore: v.unsignedBefore, Keys: slices.Clone(v.keyUses), ProblemCount: v.problemCount,
	}
	if v.head != nil {
		h := *v.head
		r.Head = &h
	}
	problems := slices.Clone(v.problems)
	if v.checked > 0 && !v.anySigned {
		r.ProblemCount++
		problems = append(problems, Problem{Kind: KindUnsigned, Seq: v.firstSeq, StreamSeq: v.firstSeq, allUnsigned: true})
	}
	slices.SortStableFunc(problems, func(a, b Problem) int {
		switch {
		case a.StreamSeq < b.StreamSeq:
			return -1
		case a.StreamSeq > b.StreamSeq:
			return 1
		}
		return 0
	})
	for i := range problems {
		problems[i].Message = v.describe(problems[i])
	}
	r.Problems = problems
	r.OK = r.ProblemCount == 0
	return r
}

// runbook is where every message points for what to do.
const runbook = `see "Audit verify failed" in docs/runbook.md`

// describe says in plain words what a problem means and what to do.
func (v *Verifier) describe(p Problem) string {
	ev := ""
	if p.EventID != "" {
		ev = " (event " + p.EventID + ")"
	}
	switch p.Kind {
	case KindEdited:
		if p.detail != "" {
			return fmt.Sprintf("the audit headers of the entry at stream sequence %d%s were changed (%s): its content cannot be trusted; the entries around it are intact; %s", p.StreamSeq, ev, p.detail, runbook)
		}
		return fmt.Sprintf("entry %d%s was changed after it was written: its content (data, subject or event id) no longer matches its MAC, while the entries around it are intact; compare it with a backup of the stream, %s", p.Seq, ev, runbook)
	case KindRemoved:
		what := fmt.Sprintf("entries %d to %d were", p.MissingFrom, p.MissingTo)
		if p.MissingFrom == p.MissingTo {
			what = fmt.Sprintf("entry %d was", p.MissingFrom)
		}
		return fmt.Sprintf("%s removed: the trail goes on with entry %d%s at stream sequence %d; restore what is missing from a backup of the stream, %s", what, p.entryPos, ev, p.StreamSeq, runbook)
	case KindReordered:
		if p.before != 0 {
			return fmt.Sprintf("entry %d%s is out of place: it was written before entry %d but comes after it, at stream sequence %d; entries were moved; %s", p.Seq, ev, p.before, p.StreamSeq, runbook)
		}
		return fmt.Sprintf("entry %d%s is out of order: it comes after entries written later than it (moved, or copied in twice); %s", p.Seq, ev, runbook)
	case KindReplaced:
		return fmt.Sprintf("entry %d%s is signed but not chained to the entry before it: it, or its predecessor, was replaced by an entry of another trail signed with the same key; %s", p.Seq, ev, runbook)
	case KindUnsigned:
		switch {
		case p.allUnsigned:
			return "no entry carries an audit MAC: the coordinators run without an audit key (-audit-key), so the trail is not protected; " + runbook
		case p.stripped:
			return fmt.Sprintf("the entries from stream sequence %d%s on carry no audit MAC, yet the signed entry after them was chained to a signed one: their MACs were stripped or they replaced signed entries; %s", p.StreamSeq, ev, runbook)
		}
		return fmt.Sprintf("the entry at stream sequence %d%s and any unsigned ones right after it carry no audit MAC although signed entries come before: they were written by something without the audit key (a coordinator started without -audit-key, or another publisher), or their MAC was stripped; %s", p.StreamSeq, ev, runbook)
	case KindKeyChanged:
		return fmt.Sprintf("entry %d%s and later ones are signed with key %s, which this check was not given (it holds %s): after a key rotation add the old key to the key file (one key a line), otherwise someone else signed them; %s", p.Seq, ev, p.keyID, strings.Join(v.keys.IDs(), ", "), runbook)
	}
	return string(p.Kind)
}
