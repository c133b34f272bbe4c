package rebuild

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// MaxProblems bounds the problems a Summary lists; the counts go on.
const MaxProblems = 100

// Summary says what a rebuild read, did and could not do.
type Summary struct {
	// Events is the number of lifecycle events read; FirstSeq and LastSeq
	// the stream sequences read from and to.
	Events   uint64
	FirstSeq uint64
	LastSeq  uint64
	// Applied events changed a job (JOB_CREATED included).
	Applied uint64
	// Checked counts JOB_COMPLETED and JOB_FAILED events, which change
	// nothing but are compared with where the fold arrived.
	Checked uint64
	// Duplicates had an event id seen before for their job: the stream
	// deduplicates within 10 minutes only, and the coordinator re-records
	// events on redelivered reports and repeated requests.
	Duplicates uint64
	// Ignored events were valid but changed nothing: a stale generation,
	// a task already at the state, a replay another replay included.
	Ignored uint64
	// Skipped counts events by type that the fold does not use: audit-only
	// types and types newer than this coordinator.
	Skipped map[string]uint64
	// Undecodable messages were not LifecycleEvents or named no job.
	Undecodable uint64
	// Unapplied events could not be applied: their job has no (valid)
	// JOB_CREATED, they name a task the job lacks, or they came out of
	// order and what they wait for never came.
	Unapplied uint64
	// Mismatches counts jobs whose last JOB_COMPLETED or JOB_FAILED event
	// records another status or item count than the fold reached.
	Mismatches uint64
	// Jobs is the number of jobs rebuilt, by status in ByStatus.
	Jobs     int
	ByStatus map[jobs.Status]int
	// Written jobs were stored; KeptNewer were left as Redis held them
	// because the running coordinators had changed them after the events
	// read (see jobstore.Store.PutIfNotNewer).
	Written   int
	KeptNewer int
	// Problems lists the first MaxProblems events or jobs that were not
	// rebuilt as recorded.
	Problems []Problem
	// ReadDuration is the time spent reading and folding the stream;
	// Duration the whole rebuild's, writing included.
	ReadDuration time.Duration
	Duration     time.Duration
}

// Problem is one event or job that was not rebuilt as recorded. It names
// ids only.
type Problem struct {
	JobID string
	// Seq is the event's stream sequence, 0 for a job-level problem.
	Seq    uint64
	Kind   string
	Detail string
}

// Problem kinds.
const (
	ProblemUndecodable = "undecodable"
	ProblemInvalid     = "invalid_event"
	ProblemNoCreation  = "no_job_created"
	ProblemUnresolved  = "out_of_order"
	ProblemMismatch    = "status_mismatch"
)

// Fold turns lifecycle events into jobs by running the jobs package's own
// transitions in the order the events were recorded. It does no I/O.
//
// Memory: every job is held until the end, because any job — even a
// finished one — can be replayed by a later event. A finished job of four
// tasks with their history costs about 1 KB (0.85 KB measured), so ten
// million jobs need about 10 GB. Beyond what the coordinator's memory
// allows, the fold must be split by job: several passes over the stream,
// each keeping only the jobs whose id hashes to its share and writing them
// out before the next; that split is future work (docs/status.md).
//
// Events of one job are recorded by different goroutines (the dispatcher,
// report handlers, replays), each after its Redis update, so they can be
// slightly out of order: a dependent task's dispatch before its
// dependency's success, a new generation's dispatch before its replay. An
// event that cannot apply yet waits with its job and is tried again after
// every event that changes the job.
type Fold struct {
	jobs  map[string]*entry
	order []*entry // jobs in the order of their JOB_CREATED events
	sum   Summary
}

type entry struct {
	id      string
	job     *jobs.Job
	seen    []uint64 // hashes of event ids, to drop duplicates
	pending []pendingEvent
	// end is the last JOB_COMPLETED/FAILED event; replayed says a replay
	// was applied after it, which voids its check.
	end      *erasurev1.LifecycleEvent
	endSeq   uint64
	replayed bool
	// invalid says the job's JOB_CREATED did not make a valid job.
	invalid bool
}

type pendingEvent struct {
	seq uint64
	ev  *erasurev1.LifecycleEvent
}

// NewFold returns an empty fold.
func NewFold() *Fold {
	return &Fold{jobs: map[string]*entry{}, sum: Summary{Skipped: map[string]uint64{}, ByStatus: map[jobs.Status]int{}}}
}

// AddMessage decodes a message of the lifecycle stream with sequence seq
// and adds it. An undecodable message is counted and skipped.
func (f *Fold) AddMessage(seq uint64, data []byte) {
	var ev erasurev1.LifecycleEvent
	if err := proto.Unmarshal(data, &ev); err != nil {
		f.saw(seq)
		f.sum.Undecodable++
		f.problem("", seq, ProblemUndecodable, "not a LifecycleEvent")
		return
	}
	f.Add(seq, &ev)
}

// Add folds one event. It never fails: what it cannot use is counted in
// the Summary.
func (f *Fold) Add(seq uint64, ev *erasurev1.LifecycleEvent) {
	f.saw(seq)
	id := ev.GetJobId()
	if id == "" {
		f.sum.Undecodable++
		f.problem("", seq, ProblemUndecodable, "event names no job")
		return
	}
	e := f.jobs[id]
	if e == nil {
		e = &entry{id: id}
		f.jobs[id] = e
	}
	if evID := ev.GetEventId(); evID != "" {
		h := hash(evID)
		for _, s := range e.seen {
			if s == h {
				f.sum.Duplicates++
				return
			}
		}
		e.seen = append(e.seen, h)
	}
	if !folded(ev.GetType()) {
		f.sum.Skipped[ev.GetType().String()]++
		return
	}
	if e.job == nil {
		if ev.GetType() != erasurev1.EventType_EVENT_TYPE_JOB_CREATED {
			e.pending = append(e.pending, pendingEvent{seq, ev})
			return
		}
		j, err := created(ev)
		if err != nil {
			e.invalid = true
			f.sum.Unapplied++
			f.problem(id, seq, ProblemInvalid, err.Error())
			return
		}
		e.job = j
		f.order = append(f.order, e)
		f.sum.Applied++
		f.drain(e, false)
		return
	}
	switch f.apply(e, seq, ev, false) {
	case outcomeNotYet:
		e.pending = append(e.pending, pendingEvent{seq, ev})
	case outcomeApplied:
		f.drain(e, false)
	}
}

func (f *Fold) saw(seq uint64) {
	f.sum.Events++
	if f.sum.FirstSeq == 0 || seq < f.sum.FirstSeq {
		f.sum.FirstSeq = seq
	}
	f.sum.LastSeq = max(f.sum.LastSeq, seq)
}

// Settle applies what can still be applied of the events that came out of
// order, now that no more events are coming: a report is applied to a
// task still waiting for its dependencies (as the coordinator would have
// done). What remains is counted as unapplied by Finish.
func (f *Fold) Settle() {
	for _, e := range f.order {
		if len(e.pending) > 0 {
			f.drain(e, true)
		}
	}
}

// Jobs returns the rebuilt jobs in the order they were created.
func (f *Fold) Jobs() []*jobs.Job {
	out := make([]*jobs.Job, 0, len(f.order))
	for _, e := range f.order {
		out = append(out, e.job)
	}
	return out
}

// Finish checks every job against its last recorded end, counts what was
// left unapplied, and returns the summary (without Written, KeptNewer).
func (f *Fold) Finish() Summary {
	s := f.sum
	s.Skipped = map[string]uint64{}
	for k, v := range f.sum.Skipped {
		s.Skipped[k] = v
	}
	s.ByStatus = map[jobs.Status]int{}
	s.Problems = append([]Problem(nil), f.sum.Problems...)
	add := func(p Problem) {
		if len(s.Problems) < MaxProblems {
			s.Problems = append(s.Problems, p)
		}
	}
	ids := make([]string, 0, len(f.jobs))
	for id := range f.jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := f.jobs[id]
		if e.job == nil {
			s.Unapplied += uint64(len(e.pending))
			switch {
			case len(e.pending) > 0 && e.invalid:
				add(Problem{JobID: id, Seq: e.pending[0].seq, Kind: ProblemInvalid, Detail: fmt.Sprintf("%d events of a job whose JOB_CREATED was invalid", len(e.pending))})
			case len(e.pending) > 0:
				add(Problem{JobID: id, Seq: e.pending[0].seq, Kind: ProblemNoCreation, Detail: fmt.Sprintf("%d events of a job without a JOB_CREATED event", len(e.pending))})
			}
			continue
		}
		s.Jobs++
		s.ByStatus[e.job.Status]++
		for _, p := range e.pending {
			s.Unapplied++
			add(Problem{JobID: id, Seq: p.seq, Kind: ProblemUnresolved, Detail: fmt.Sprintf("%s of %s/%s generation %d never became applicable", p.ev.GetType(), p.ev.GetCategory(), p.ev.GetStage(), p.ev.GetGeneration())})
		}
		if e.end != nil && !e.replayed {
			want := jobs.StatusCompleted
			if e.end.GetType() == erasurev1.EventType_EVENT_TYPE_JOB_FAILED {
				want = jobs.StatusFailed
			}
			if e.job.Status != want || e.job.ItemsPurged() != e.end.GetItemsPurged() {
				s.Mismatches++
				add(Problem{JobID: id, Seq: e.endSeq, Kind: ProblemMismatch, Detail: fmt.Sprintf("recorded %s with %d items, rebuilt %s with %d", want, e.end.GetItemsPurged(), e.job.Status, e.job.ItemsPurged())})
			}
		}
	}
	return s
}

type outcome int

const (
	outcomeApplied outcome = iota
	outcomeIgnored
	outcomeNotYet
	outcomeFailed
)

// drain retries the job's waiting events, in order, until none applies.
func (f *Fold) drain(e *entry, force bool) {
	for progress := true; progress && len(e.pending) > 0; {
		progress = false
		keep := e.pending[:0]
		for _, p := range e.pending {
			switch f.apply(e, p.seq, p.ev, force) {
			case outcomeNotYet:
				keep = append(keep, p)
			case outcomeApplied:
				progress = true
			}
		}
		clear(e.pending[len(keep):])
		e.pending = keep
	}
}

// apply folds one event into its job and counts the result, except
// outcomeNotYet, which the caller keeps for later. With force, a report
// or retry for a task still waiting for its dependencies is applied.
func (f *Fold) apply(e *entry, seq uint64, ev *erasurev1.LifecycleEvent, force bool) outcome {
	o, err := step(e, ev, force)
	switch o {
	case outcomeApplied:
		f.sum.Applied++
	case outcomeIgnored:
		if isEnd(ev.GetType()) {
			f.sum.Checked++
		} else {
			f.sum.Ignored++
		}
	case outcomeFailed:
		f.sum.Unapplied++
		f.problem(e.id, seq, ProblemInvalid, err.Error())
	}
	return o
}

// step is apply without the counting.
func step(e *entry, ev *erasurev1.LifecycleEvent, force bool) (outcome, error) {
	j := e.job
	at := ev.GetAt().AsTime()
	gen := ev.GetGeneration()
	k := jobs.TaskKey{Category: ev.GetCategory(), Stage: ev.GetStage()}
	var t *jobs.Task
	switch typ := ev.GetType(); typ {
	case erasurev1.EventType_EVENT_TYPE_JOB_CREATED:
		// A second JOB_CREATED under another event id cannot be recorded
		// by this coordinator; the first one made the job.
		return outcomeIgnored, nil
	case erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED, erasurev1.EventType_EVENT_TYPE_JOB_FAILED:
		e.end, e.replayed = ev, false
		return outcomeIgnored, nil
	case erasurev1.EventType_EVENT_TYPE_JOB_CANCELLED, erasurev1.EventType_EVENT_TYPE_JOB_FORCED,
		erasurev1.EventType_EVENT_TYPE_JOB_HELD, erasurev1.EventType_EVENT_TYPE_JOB_RELEASED,
		erasurev1.EventType_EVENT_TYPE_DEADLINE_EXTENDED:
		return act(j, ev)
	default:
		var err error
		if t, err = j.Task(k); err != nil {
			return outcomeFailed, fmt.Errorf("%s: %w", typ, err)
		}
	}
	switch ev.GetType() {
	case erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED:
		switch {
		case gen < t.Generation:
			return outcomeIgnored, nil
		case gen > t.Generation:
			return outcomeNotYet, nil
		case t.Status == jobs.TaskWaiting && !force:
			return outcomeNotYet, nil
		case t.Status == jobs.TaskScheduled:
			_, err := j.MarkDispatched(k, gen, at)
			return applied(err)
		case t.Status.Terminal():
			changed, err := j.SetDispatchedAt(k, gen, at)
			if err != nil || !changed {
				return ignored(err)
			}
			return outcomeApplied, nil
		default:
			// Already dispatched, or (forced) still waiting: the report
			// will set the dispatch time.
			return outcomeIgnored, nil
		}
	case erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED, erasurev1.EventType_EVENT_TYPE_TASK_FAILED:
		switch {
		case gen < t.Generation:
			return outcomeIgnored, nil
		case gen > t.Generation:
			return outcomeNotYet, nil
		case t.Status == jobs.TaskWaiting && !force:
			return outcomeNotYet, nil
		}
		// The event carries the task's totals across generations; the
		// report that made them carried this generation's share.
		r := jobs.Report{
			Task: k, Generation: gen, Succeeded: ev.GetType() == erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED,
			Items:     ev.GetItemsPurged() - t.PriorItems,
			ErrorCode: ev.GetErrorCode(), Error: ev.GetError(), At: at,
		}
		for name, ts := range ev.GetAnchors() {
			if r.Anchors == nil {
				r.Anchors = map[string]time.Time{}
			}
			r.Anchors[name] = ts.AsTime()
		}
		if a := ev.GetAttempt(); a > t.PriorAttempts {
			r.Attempt = a - t.PriorAttempts
		}
		eff, err := j.ApplyReport(r)
		if err != nil {
			return outcomeFailed, err
		}
		if eff.Result != jobs.ReportApplied {
			return outcomeIgnored, nil
		}
		return outcomeApplied, nil
	case erasurev1.EventType_EVENT_TYPE_TASK_RETRYING:
		switch {
		case gen < t.Generation:
			return outcomeIgnored, nil
		case gen > t.Generation:
			return outcomeNotYet, nil
		case t.Status == jobs.TaskWaiting && !force:
			return outcomeNotYet, nil
		}
		_, recorded, err := j.RecordRetry(jobs.Report{
			Task: k, Generation: gen, Attempt: ev.GetAttempt(), ErrorCode: ev.GetErrorCode(), Error: ev.GetError(), At: at,
		})
		if err != nil || !recorded {
			return ignored(err)
		}
		return outcomeApplied, nil
	case erasurev1.EventType_EVENT_TYPE_TASK_REDISPATCHED:
		switch {
		case gen < t.Generation:
			return outcomeIgnored, nil
		case gen > t.Generation:
			return outcomeNotYet, nil
		case (t.Status == jobs.TaskScheduled || t.Status == jobs.TaskWaiting) && !force:
			return outcomeNotYet, nil
		}
		// The message's sequence in the tasks stream is not in the
		// event: MsgSeq stays 0, which reconciliation reads as unknown.
		changed, err := j.MarkRedispatched(k, gen, 0, at)
		if err != nil || !changed {
			return ignored(err)
		}
		return outcomeApplied, nil
	case erasurev1.EventType_EVENT_TYPE_TASK_REPLAYED:
		switch {
		case gen <= t.Generation:
			// Already replayed: a duplicate, or a dependent task that
			// its dependency's replay took along.
			return outcomeIgnored, nil
		case gen > t.Generation+1 || !t.Status.Terminal():
			// The outcome of the generation before has not come yet.
			return outcomeNotYet, nil
		}
		if _, err := j.Replay(jobs.ReplaySelector(k), ev.GetActor(), ev.GetReason(), at); err != nil {
			return outcomeFailed, err
		}
		e.replayed = true
		return outcomeApplied, nil
	}
	return outcomeIgnored, nil
}

func applied(err error) (outcome, error) {
	if err != nil {
		return outcomeFailed, err
	}
	return outcomeApplied, nil
}

func ignored(err error) (outcome, error) {
	if err != nil {
		return outcomeFailed, err
	}
	return outcomeIgnored, nil
}

// folded reports whether the fold uses events of type t. The others are
// audit-only (a dead-lettered task fails through the TASK_FAILED of the
// report that gave up) or newer than this code.
func folded(t erasurev1.EventType) bool {
	switch t {
	case erasurev1.EventType_EVENT_TYPE_JOB_CREATED,
		erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED,
		erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED,
		erasurev1.EventType_EVENT_TYPE_TASK_FAILED,
		erasurev1.EventType_EVENT_TYPE_TASK_RETRYING,
		erasurev1.EventType_EVENT_TYPE_TASK_REPLAYED,
		erasurev1.EventType_EVENT_TYPE_TASK_REDISPATCHED,
		erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED,
		erasurev1.EventType_EVENT_TYPE_JOB_FAILED,
		erasurev1.EventType_EVENT_TYPE_JOB_CANCELLED,
		erasurev1.EventType_EVENT_TYPE_JOB_FORCED,
		erasurev1.EventType_EVENT_TYPE_JOB_HELD,
		erasurev1.EventType_EVENT_TYPE_JOB_RELEASED,
		erasurev1.EventType_EVENT_TYPE_DEADLINE_EXTENDED:
		return true
	}
	// JOB_ERASED and TASK_SCHEDULED follow from the reports (and their
	// anchors); the fold derives them.
	return false
}

var actionKinds = map[erasurev1.EventType]jobs.ActionKind{
	erasurev1.EventType_EVENT_TYPE_JOB_CANCELLED:     jobs.ActionCancel,
	erasurev1.EventType_EVENT_TYPE_JOB_FORCED:        jobs.ActionForce,
	erasurev1.EventType_EVENT_TYPE_JOB_HELD:          jobs.ActionHold,
	erasurev1.EventType_EVENT_TYPE_JOB_RELEASED:      jobs.ActionRelease,
	erasurev1.EventType_EVENT_TYPE_DEADLINE_EXTENDED: jobs.ActionExtend,
}

// act replays a privacy action. Its event follows every event of the
// job recorded before it, so a status that refuses it now means events
// are missing or out of order: it waits (and is counted unapplied if it
// never fits).
func act(j *jobs.Job, ev *erasurev1.LifecycleEvent) (outcome, error) {
	kind := actionKinds[ev.GetType()]
	n := 0
	for _, a := range j.Actions {
		if a.Kind == kind {
			n++
		}
	}
	req := jobs.ActionRequest{Kind: kind, Actor: ev.GetActor(), Reason: ev.GetReason(), Ticket: ev.GetTicket()}
	if kind == jobs.ActionExtend {
		if req.Months = j.ExtensionMonths(ev.GetDeadline().AsTime()); req.Months == 0 {
			return outcomeFailed, fmt.Errorf("DEADLINE_EXTENDED to %s is not a one- or two-month extension of the job's deadline", ev.GetDeadline().AsTime().Format(time.RFC3339))
		}
	}
	if _, err := j.Act(req, ev.GetAt().AsTime()); err != nil {
		if _, ok := jobs.CurrentStatus(err); ok {
			return outcomeNotYet, nil
		}
		return outcomeFailed, err
	}
	return outcomeApplied, nil
}

func isEnd(t erasurev1.EventType) bool {
	return t == erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED || t == erasurev1.EventType_EVENT_TYPE_JOB_FAILED
}

// created builds the job a JOB_CREATED event describes.
func created(ev *erasurev1.LifecycleEvent) (*jobs.Job, error) {
	plan := jobs.Plan{PolicyVersion: ev.GetPolicyVersion(), PolicyFingerprint: ev.GetPolicyFingerprint()}
	if g := ev.GetGraceUntil(); g != nil {
		plan.Grace = g.AsTime().Sub(ev.GetAt().AsTime())
	}
	for _, ref := range ev.GetTasks() {
		s := jobs.TaskSpec{Category: ref.GetCategory(), Stage: ref.GetStage(), Action: ref.GetAction(), After: ref.GetAfter().AsDuration(),
			Retention: ref.GetRetention(), LegalBasis: ref.GetLegalBasis()}
		if a := ref.GetCalendarAnchor(); a != "" {
			s.Calendar = &jobs.Calendar{Anchor: a, PlusYears: int(ref.GetCalendarPlusYears()), Zone: ref.GetCalendarZone()}
		}
		for _, d := range ref.GetDependsOn() {
			k, err := jobs.ParseTaskKey(d)
			if err != nil {
				return nil, fmt.Errorf("JOB_CREATED: %w", err)
			}
			s.DependsOn = append(s.DependsOn, k)
		}
		plan.Tasks = append(plan.Tasks, s)
	}
	req := jobs.Request{
		AccountID: ev.GetAccountId(), Origin: jobs.Origin(ev.GetOrigin()), RequestedBy: ev.GetActor(),
		Reason: ev.GetReason(), EventID: ev.GetSourceEventId(),
	}
	var deadline time.Time // zero: DeadlineFor's
	if d := ev.GetDeadline(); d != nil {
		deadline = d.AsTime()
	}
	j, err := jobs.Restore(ev.GetJobId(), req, plan, ev.GetAt().AsTime(), deadline)
	if err != nil {
		if errors.Is(err, jobs.ErrInvalid) {
			return nil, fmt.Errorf("JOB_CREATED does not make a valid job: %w", err)
		}
		return nil, err
	}
	return j, nil
}

func (f *Fold) problem(jobID string, seq uint64, kind, detail string) {
	if len(f.sum.Problems) < MaxProblems {
		f.sum.Problems = append(f.sum.Problems, Problem{JobID: jobID, Seq: seq, Kind: kind, Detail: detail})
	}
}

// hash is 64-bit FNV-1a: event ids are kept as hashes to save memory; a
// collision within one job's few dozen events is out of reach.
func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
