// Package jobs is the erasure job domain: a job per account, one task per
// (category, stage), and the rules by which reports move them. It holds no
// I/O: the store loads a job, calls these methods, and saves the result
// atomically, so every rule here is tested as plain Go.
package jobs

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Status is a job's state.
type Status string

// Job statuses. A job starts pending (in its grace period) or running,
// may be held and released, becomes erased once only legally retained
// records remain, and ends completed, failed or cancelled. docs/lifecycle.md
// draws the state machine.
const (
	// StatusPending: in the grace period; no stage has run, and a
	// dashboard-initiated deletion can still be cancelled.
	StatusPending Status = "pending"
	// StatusRunning: stages are being run.
	StatusRunning Status = "running"
	// StatusHeld: a legal hold; no stage is dispatched until release.
	StatusHeld Status = "held"
	// StatusErased: every stage that erases or puts data beyond use is
	// done; only retention stages (each with its date) remain.
	StatusErased Status = "erased"
	// StatusCompleted: every stage succeeded.
	StatusCompleted Status = "completed"
	// StatusFailed: every stage ended and at least one failed.
	StatusFailed Status = "failed"
	// StatusCancelled: cancelled during the grace period; nothing erased.
	StatusCancelled Status = "cancelled"
)

// Statuses lists every status, active ones first.
var Statuses = []Status{StatusPending, StatusRunning, StatusHeld, StatusErased, StatusCompleted, StatusFailed, StatusCancelled}

// ActiveStatuses are the statuses of jobs that still have work to do.
var ActiveStatuses = []Status{StatusPending, StatusRunning, StatusHeld, StatusErased}

// Terminal reports whether the job has ended: no report or action (but a
// replay of a failed job) changes it any more.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusHeld, StatusErased:
		return true
	}
	return s.Terminal()
}

// Dispatchable reports whether the job's due stages may be sent to workers.
func (s Status) Dispatchable() bool {
	return s == StatusPending || s == StatusRunning || s == StatusErased
}

// OwesErasure reports whether the job's legal deadline still matters: the
// data is not yet erased (a held job too: the hold is a reason to wait, not
// a reason to forget).
func (s Status) OwesErasure() bool {
	return s == StatusPending || s == StatusRunning || s == StatusHeld
}

// TaskStatus is a task's state.
type TaskStatus string

// Task statuses: waiting (for the tasks it depends on), scheduled (waiting
// for its due time), dispatched (sent to the worker), then succeeded or
// failed.
const (
	TaskWaiting    TaskStatus = "waiting"
	TaskScheduled  TaskStatus = "scheduled"
	TaskDispatched TaskStatus = "dispatched"
	TaskSucceeded  TaskStatus = "succeeded"
	TaskFailed     TaskStatus = "failed"
	// TaskCancelled: the job was cancelled before the task ran.
	TaskCancelled TaskStatus = "cancelled"
)

// Terminal reports whether the task has its final outcome.
func (s TaskStatus) Terminal() bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskCancelled
}

// Origin says who asked for an erasure.
type Origin string

// Origins.
const (
	OriginDashboard Origin = "dashboard"
	OriginAPI       Origin = "api"
)

// TaskSpec is one step of the plan a job is created with.
type TaskSpec struct {
	Category string
	Stage    string
	Action   string
	// After delays the task from the job's creation (grace included).
	After time.Duration
	// Calendar, when set, dates the task from an anchor date reported by
	// an earlier task (see Job.Anchors); After is then its earliest time.
	Calendar *Calendar
	// Retention marks a delayed stage: data kept on a legal basis until
	// it runs. The job is erased once only such tasks remain.
	Retention bool
	// LegalBasis says why the stage runs when it does.
	LegalBasis string
	// DependsOn lists tasks that must succeed before this one runs: the
	// backup ledger entry is written before any data is destroyed, so a
	// restored backup can never bring an erased account back.
	DependsOn []TaskKey
}

// Task is one (category, stage) of a job.
type Task struct {
	Category    string     `json:"category"`
	Stage       string     `json:"stage"`
	Action      string     `json:"action"`
	Status      TaskStatus `json:"status"`
	Generation  uint32     `json:"generation"`
	Attempts    uint32     `json:"attempts"`
	ItemsPurged int64      `json:"items_purged"`
	Error       string     `json:"error,omitempty"`
	ErrorCode   string     `json:"error_code,omitempty"`
	DependsOn   []TaskKey  `json:"depends_on,omitempty"`
	// PriorAttempts and PriorItems carry the totals of earlier
	// generations, so that a replay adds to them and counts nothing twice.
	PriorAttempts uint32 `json:"prior_attempts,omitempty"`
	PriorItems    int64  `json:"prior_items,omitempty"`
	// MsgSeq is the tasks-stream sequence of the last dispatch's message,
	// and Redispatches counts reconciliation's re-publishes of it.
	MsgSeq       uint64 `json:"msg_seq,omitempty"`
	Redispatches int    `json:"redispatches,omitempty"`
	// History lists every outcome reported and every replay, oldest first.
	History      []Attempt  `json:"history,omitempty"`
	DueAt        time.Time  `json:"due_at"`
	DispatchedAt *time.Time `json:"dispatched_at,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	// Calendar, Retention and LegalBasis come from the retention policy
	// (see TaskSpec).
	Calendar   *Calendar `json:"calendar,omitempty"`
	Retention  bool      `json:"retention,omitempty"`
	LegalBasis string    `json:"legal_basis,omitempty"`
}

// Attempt is one entry of a task's history: a reported outcome or a
// replay.
type Attempt struct {
	Generation uint32 `json:"generation"`
	// Attempt is the delivery within the generation, from the report.
	Attempt   uint32    `json:"attempt,omitempty"`
	At        time.Time `json:"at"`
	Outcome   string    `json:"outcome"`
	ErrorCode string    `json:"error_code,omitempty"`
	Error     string    `json:"error,omitempty"`
	// Actor and Reason are set for replays.
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Outcomes in a task's history.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeReplayed  = "replayed"
	OutcomeRetrying  = "retrying"
)

// maxHistory bounds a task's history; the lifecycle stream keeps it all.
const maxHistory = 50

func (t *Task) record(a Attempt) {
	t.History = append(t.History, a)
	if n := len(t.History); n > maxHistory {
		t.History = t.History[n-maxHistory:]
	}
}

// Key names the task within its job.
func (t *Task) Key() TaskKey { return TaskKey{Category: t.Category, Stage: t.Stage} }

// TaskKey names a task within a job.
type TaskKey struct {
	Category string `json:"category"`
	Stage    string `json:"stage"`
}

func (k TaskKey) String() string { return k.Category + "/" + k.Stage }

// Job is one erasure of one account.
type Job struct {
	ID          string     `json:"id"`
	AccountID   string     `json:"account_id"`
	Status      Status     `json:"status"`
	Origin      Origin     `json:"origin"`
	RequestedBy string     `json:"requested_by"`
	Reason      string     `json:"reason"`
	EventID     string     `json:"event_id,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Deadline    time.Time  `json:"deadline"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Error       string     `json:"error,omitempty"`
	Tasks       []Task     `json:"tasks"`

	// PolicyVersion and PolicyFingerprint name the retention policy the
	// job was planned with; a running job keeps it when the file changes.
	PolicyVersion     string `json:"policy_version,omitempty"`
	PolicyFingerprint string `json:"policy_fingerprint,omitempty"`
	// GraceUntil ends the grace period: no stage runs before it.
	GraceUntil time.Time `json:"grace_until"`
	// HeldFrom is the status a held job returns to on release.
	HeldFrom Status `json:"held_from,omitempty"`
	// OriginalDeadline is set once the deadline has been extended.
	OriginalDeadline *time.Time `json:"original_deadline,omitempty"`
	// ErasedAt is when only retention stages were left (or the job
	// completed without any).
	ErasedAt *time.Time `json:"erased_at,omitempty"`
	// Anchors are dates reported by tasks that calendar stages are
	// reckoned from ("invoice_issued").
	Anchors map[string]time.Time `json:"anchors,omitempty"`
	// Actions lists the privacy team's and the customer's actions on the
	// job (cancel, force, hold, release, extend), oldest first.
	Actions []Action `json:"actions,omitempty"`
}

// Errors callers decide on.
var (
	// ErrInvalid wraps every validation failure of a request.
	ErrInvalid = errors.New("invalid erasure request")
	// ErrUnknownTask means a report names a task the job does not have.
	ErrUnknownTask = errors.New("no such task in job")
	// ErrNotFound means there is no job with the id.
	ErrNotFound = errors.New("job not found")
)

var (
	accountIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	principalPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
)

// ValidateAccountID checks that id is an internal account id: 1 to 128
// letters, digits and . _ : - — which also keeps e-mail addresses out.
func ValidateAccountID(id string) error {
	if !accountIDPattern.MatchString(id) {
		return fmt.Errorf("%w: account_id must be 1-128 letters, digits, '.', '_', ':' or '-' and start with a letter or digit (an internal id, never an e-mail address)", ErrInvalid)
	}
	return nil
}

// ValidatePrincipal checks a requested_by value.
func ValidatePrincipal(p string) error {
	if !principalPattern.MatchString(p) {
		return fmt.Errorf("%w: requested_by must be a principal id of 1-128 letters, digits, '.', '_', ':', '/' or '-' (e.g. privacy:jdoe), never a name or an e-mail address", ErrInvalid)
	}
	return nil
}

// MaxReasonLen bounds a request's reason.
const MaxReasonLen = 500

// Request asks for the erasure of one account.
type Request struct {
	AccountID   string
	Origin      Origin
	RequestedBy string
	Reason      string
	// EventID identifies the dashboard event that asked, if any.
	EventID string
}

// Validate checks the request.
func (r Request) Validate() error {
	if err := ValidateAccountID(r.AccountID); err != nil {
		return err
	}
	if err := ValidatePrincipal(r.RequestedBy); err != nil {
		return err
	}
	if r.Origin != OriginAPI && r.Origin != OriginDashboard {
		return fmt.Errorf("%w: unknown origin %q", ErrInvalid, r.Origin)
	}
	if len(r.Reason) > MaxReasonLen {
		return fmt.Errorf("%w: reason is longer than %d bytes", ErrInvalid, MaxReasonLen)
	}
	for _, c := range r.Reason {
		if c < 0x20 && c != '\t' {
			return fmt.Errorf("%w: reason contains control characters", ErrInvalid)
		}
	}
	if len(r.EventID) > 128 {
		return fmt.Errorf("%w: event_id is longer than 128 bytes", ErrInvalid)
	}
	return nil
}

// DeadlineFor is the legal deadline of a request made at t: one calendar
// month (GDPR Art. 12(3)). Go's AddDate normalises 31 January + 1 month to
// 3 March; the deadline is clamped to the last day of the next month
// instead, as a month is counted in law.
func DeadlineFor(t time.Time) time.Time {
	t = t.UTC()
	d := t.AddDate(0, 1, 0)
	if d.Day() != t.Day() {
		// Overflowed into the month after: go back to the end of next month.
		d = d.AddDate(0, 0, -d.Day())
	}
	return d
}

// Plan is what a job is created with: its tasks, its grace period and the
// retention policy they come from.
type Plan struct {
	Tasks             []TaskSpec
	Grace             time.Duration
	PolicyVersion     string
	PolicyFingerprint string
}

// New creates a running job for a validated request with one task per plan
// entry, due at now + After, and no grace period.
func New(id string, req Request, plan []TaskSpec, now time.Time) (*Job, error) {
	return NewPlanned(id, req, Plan{Tasks: plan}, now)
}

// NewPlanned creates a job from a plan: pending until the grace period
// ends when there is one, running otherwise.
func NewPlanned(id string, req Request, p Plan, now time.Time) (*Job, error) {
	plan := p.Tasks
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, fmt.Errorf("%w: empty job id", ErrInvalid)
	}
	if len(plan) == 0 {
		return nil, fmt.Errorf("%w: empty plan", ErrInvalid)
	}
	now = now.UTC()
	j := &Job{
		ID:          id,
		AccountID:   req.AccountID,
		Status:      StatusRunning,
		Origin:      req.Origin,
		RequestedBy: req.RequestedBy,
		Reason:      req.Reason,
		EventID:     req.EventID,
		CreatedAt:   now,
		UpdatedAt:   now,
		Deadline:    DeadlineFor(now),

		PolicyVersion:     p.PolicyVersion,
		PolicyFingerprint: p.PolicyFingerprint,
		GraceUntil:        now.Add(max(p.Grace, 0)),
	}
	if p.Grace > 0 {
		j.Status = StatusPending
	}
	seen := map[TaskKey]bool{}
	for _, s := range plan {
		k := TaskKey{s.Category, s.Stage}
		if seen[k] {
			return nil, fmt.Errorf("%w: plan lists %s twice", ErrInvalid, k)
		}
		for _, d := range s.DependsOn {
			// Dependencies must come earlier in the plan, which also rules
			// out cycles.
			if !seen[d] {
				return nil, fmt.Errorf("%w: %s depends on %s, which is not listed before it", ErrInvalid, k, d)
			}
		}
		seen[k] = true
		status := TaskScheduled
		if len(s.DependsOn) > 0 {
			status = TaskWaiting
		}
		j.Tasks = append(j.Tasks, Task{
			Category:   s.Category,
			Stage:      s.Stage,
			Action:     s.Action,
			Status:     status,
			Generation: 1,
			DependsOn:  s.DependsOn,
			DueAt:      now.Add(s.After),
			Calendar:   s.Calendar,
			Retention:  s.Retention,
			LegalBasis: s.LegalBasis,
		})
	}
	return j, nil
}

// release moves waiting tasks on once their dependencies ended: to
// scheduled (due no earlier than at) when all succeeded, to failed when
// one failed — a task whose precondition failed must not run.
func (j *Job) release(at time.Time) []TaskKey {
	var released []TaskKey
	for changed := true; changed; {
		changed = false
		for i := range j.Tasks {
			t := &j.Tasks[i]
			if t.Status != TaskWaiting {
				continue
			}
			ready := true
			for _, d := range t.DependsOn {
				dep, err := j.Task(d)
				switch {
				case err != nil || dep.Status == TaskFailed:
					t.Status = TaskFailed
					t.ErrorCode = "dependency_failed"
					t.Error = fmt.Sprintf("not run because %s failed", d)
					t.FinishedAt = &at
					changed = true
				case dep.Status != TaskSucceeded:
					ready = false
				}
				if t.Status == TaskFailed {
					break
				}
			}
			if t.Status == TaskWaiting && ready {
				t.Status = TaskScheduled
				if t.Calendar != nil {
					// Dated now that the tasks it depends on reported
					// their anchors; never earlier than planned.
					if a, ok := j.Anchors[t.Calendar.Anchor]; ok {
						if due, err := t.Calendar.Due(a); err == nil && due.After(t.DueAt) {
							t.DueAt = due
						}
					}
				}
				if t.DueAt.Before(at) {
					t.DueAt = at
				}
				released = append(released, t.Key())
				changed = true
			}
		}
	}
	return released
}

// Task returns the task named by k.
func (j *Job) Task(k TaskKey) (*Task, error) {
	for i := range j.Tasks {
		if j.Tasks[i].Key() == k {
			return &j.Tasks[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownTask, k)
}

// MarkDispatched records that generation gen of task k was published. It
// reports false when there was nothing to change: the task has moved on
// (a report already arrived) or belongs to another generation.
func (j *Job) MarkDispatched(k TaskKey, gen uint32, at time.Time) (bool, error) {
	t, err := j.Task(k)
	if err != nil {
		return false, err
	}
	if t.Generation != gen || t.Status != TaskScheduled {
		return false, nil
	}
	if !j.Status.Dispatchable() {
		return false, nil
	}
	at = at.UTC()
	t.Status = TaskDispatched
	t.DispatchedAt = &at
	j.touch(at)
	if j.Status == StatusPending {
		j.Status = StatusRunning
	}
	return true, nil
}

// UnmarkDispatched gives back the claim on generation gen of task k when
// its message could not be published: the task is scheduled again. It
// reports false when the task has moved on (a report came, or it was
// already published).
func (j *Job) UnmarkDispatched(k TaskKey, gen uint32) bool {
	t, err := j.Task(k)
	if err != nil || t.Generation != gen || t.Status != TaskDispatched || t.MsgSeq != 0 {
		return false
	}
	t.Status = TaskScheduled
	t.DispatchedAt = nil
	return true
}

// SetMsgSeq records where generation gen of task k's message sits in the
// tasks stream; a stale generation is ignored.
func (j *Job) SetMsgSeq(k TaskKey, gen uint32, seq uint64) error {
	t, err := j.Task(k)
	if err != nil {
		return err
	}
	if t.Generation == gen {
		t.MsgSeq = seq
	}
	return nil
}

// MarkRedispatched records that reconciliation published the dispatched
// task again (its message was gone without a report). It reports false
// when the task is no longer dispatched in that generation.
func (j *Job) MarkRedispatched(k TaskKey, gen uint32, seq uint64, at time.Time) (bool, error) {
	t, err := j.Task(k)
	if err != nil {
		return false, err
	}
	if t.Generation != gen || t.Status != TaskDispatched {
		return false, nil
	}
	at = at.UTC()
	t.MsgSeq = seq
	t.Redispatches++
	t.DispatchedAt = &at
	j.touch(at)
	return true, nil
}

// Report is a worker's report as the domain sees it.
type Report struct {
	Task       TaskKey
	Generation uint32
	Succeeded  bool
	Items      int64
	ErrorCode  string
	Error      string
	Attempt    uint32
	At         time.Time
	// Anchors are dates later calendar stages are reckoned from.
	Anchors map[string]time.Time
}

// ReportResult says what applying a report did.
type ReportResult string

// Report results.
const (
	// ReportApplied: the task took the report's outcome.
	ReportApplied ReportResult = "applied"
	// ReportDuplicate: the task already had its outcome for this generation.
	ReportDuplicate ReportResult = "duplicate"
	// ReportStale: the report is of an older generation than the task.
	ReportStale ReportResult = "stale"
)

// Effect is the outcome of ApplyReport.
type Effect struct {
	Result ReportResult
	// Finished is true when this report ended the job.
	Finished bool
	// Erased is true when this report left only retention stages.
	Erased bool
	// Released lists the tasks this report let run (their dependencies
	// all succeeded); calendar tasks among them now have their date.
	Released []TaskKey
}

// ApplyReport applies a worker's report. Applying the same report again,
// or any report once its task has an outcome for that generation, changes
// nothing (ReportDuplicate), so redelivered reports never double-count.
// When every task has an outcome the job ends: completed if all
// succeeded, failed otherwise, with the first failure as its error — never
// completed with a failed task.
func (j *Job) ApplyReport(r Report) (Effect, error) {
	t, err := j.Task(r.Task)
	if err != nil {
		return Effect{}, err
	}
	switch {
	case r.Generation < t.Generation:
		return Effect{Result: ReportStale}, nil
	case r.Generation > t.Generation:
		// A generation the coordinator never dispatched.
		return Effect{}, fmt.Errorf("%w: %s generation %d, job has %d", ErrUnknownTask, r.Task, r.Generation, t.Generation)
	case t.Status.Terminal():
		return Effect{Result: ReportDuplicate}, nil
	}
	at := r.At.UTC()
	t.Attempts = t.PriorAttempts + max(r.Attempt, 1)
	t.FinishedAt = &at
	if t.DispatchedAt == nil {
		// The dispatch mark was lost (a crash after publishing); the
		// report proves the dispatch.
		t.DispatchedAt = &at
	}
	t.ItemsPurged = t.PriorItems + r.Items
	if r.Succeeded {
		t.Status = TaskSucceeded
		t.Error, t.ErrorCode = "", ""
		t.record(Attempt{Generation: r.Generation, Attempt: r.Attempt, At: at, Outcome: OutcomeSucceeded})
	} else {
		t.Status = TaskFailed
		t.ErrorCode = r.ErrorCode
		t.Error = r.Error
		if t.Error == "" {
			t.Error = "the worker reported a failure without a reason"
		}
		t.record(Attempt{Generation: r.Generation, Attempt: r.Attempt, At: at, Outcome: OutcomeFailed, ErrorCode: t.ErrorCode, Error: t.Error})
	}
	if r.Succeeded {
		for k, v := range r.Anchors {
			if j.Anchors == nil {
				j.Anchors = map[string]time.Time{}
			}
			// The latest date wins: a retention period runs from the
			// newest record it covers.
			if v = v.UTC(); v.After(j.Anchors[k]) {
				j.Anchors[k] = v
			}
		}
	}
	j.touch(at)
	eff := Effect{Result: ReportApplied, Released: j.release(at)}
	before := j.Status
	j.settle(at)
	eff.Finished = !before.Terminal() && j.Status.Terminal()
	eff.Erased = before != StatusErased && j.Status == StatusErased
	return eff, nil
}

// settle moves the job to the status its tasks imply: failed or completed
// once every task has ended, erased once only retention tasks are left.
// A held or cancelled job keeps its status (release settles it).
func (j *Job) settle(at time.Time) {
	if j.Status == StatusHeld || j.Status.Terminal() {
		return
	}
	if j.allTerminal() {
		if j.ErasedAt == nil && !j.hasFailed() {
			j.ErasedAt = &at
		}
		j.finish(at)
		return
	}
	if j.Status == StatusErased {
		return
	}
	if j.ErasedAt == nil && j.onlyRetentionLeft() {
		j.Status = StatusErased
		j.ErasedAt = &at
	}
}

func (j *Job) hasFailed() bool {
	for i := range j.Tasks {
		if j.Tasks[i].Status == TaskFailed {
			return true
		}
	}
	return false
}

// onlyRetentionLeft reports whether every non-retention task succeeded
// and at least one retention task is still to run.
func (j *Job) onlyRetentionLeft() bool {
	left := false
	for i := range j.Tasks {
		t := &j.Tasks[i]
		switch {
		case t.Retention && !t.Status.Terminal():
			left = true
		case !t.Retention && t.Status != TaskSucceeded:
			return false
		}
	}
	return left
}

func (j *Job) allTerminal() bool {
	for i := range j.Tasks {
		if !j.Tasks[i].Status.Terminal() {
			return false
		}
	}
	return true
}

func (j *Job) finish(at time.Time) {
	j.Status = StatusCompleted
	j.Error = ""
	for i := range j.Tasks {
		if t := &j.Tasks[i]; t.Status == TaskFailed {
			j.Status = StatusFailed
			j.Error = fmt.Sprintf("%s failed: %s", t.Key(), t.Error)
			break
		}
	}
	j.FinishedAt = &at
}

// ItemsPurged sums the items of every task.
func (j *Job) ItemsPurged() int64 {
	var n int64
	for i := range j.Tasks {
		n += j.Tasks[i].ItemsPurged
	}
	return n
}

// GenerationSum changes whenever a task is re-dispatched as a new
// generation; event ids that must differ per replay include it.
func (j *Job) GenerationSum() uint64 {
	var n uint64
	for i := range j.Tasks {
		n += uint64(j.Tasks[i].Generation)
	}
	return n
}

// RecordRetry notes a failed delivery that the worker will retry: the
// task's history and attempt count grow, nothing else changes. It returns
// the history entry and false for a stale or finished task or a delivery
// already recorded.
func (j *Job) RecordRetry(r Report) (Attempt, bool, error) {
	t, err := j.Task(r.Task)
	if err != nil {
		return Attempt{}, false, err
	}
	if r.Generation != t.Generation || t.Status.Terminal() {
		return Attempt{}, false, nil
	}
	for _, a := range t.History {
		if a.Generation == r.Generation && a.Attempt == r.Attempt && a.Outcome == OutcomeRetrying {
			return a, false, nil
		}
	}
	a := Attempt{Generation: r.Generation, Attempt: r.Attempt, At: r.At.UTC(), Outcome: OutcomeRetrying, ErrorCode: r.ErrorCode, Error: r.Error}
	t.record(a)
	t.Attempts = max(t.Attempts, t.PriorAttempts+r.Attempt)
	t.Error, t.ErrorCode = r.Error, r.ErrorCode
	j.touch(a.At)
	return a, true, nil
}

// ErrConflict means the job's state does not allow the action now.
var ErrConflict = errors.New("conflicts with the job's state")

// ReplaySelector chooses the tasks to run again. Empty Category: every
// failed task. With Category (and optionally Stage): those tasks, even if
// they succeeded — a replay of a succeeded task finds nothing left and adds
// nothing to the counts.
type ReplaySelector struct {
	Category string
	Stage    string
}

// Replay dispatches the selected tasks again as a new generation, and
// reopens the job if it had ended. Tasks of an older generation can no
// longer report (their reports are stale). It returns the replayed tasks;
// an error wrapping ErrConflict when a selected task is still under way or
// nothing matches.
func (j *Job) Replay(sel ReplaySelector, actor, reason string, at time.Time) ([]TaskKey, error) {
	at = at.UTC()
	switch j.Status {
	case StatusCancelled:
		return nil, &StateError{Action: "replay", Status: j.Status, Hint: "a cancelled job erases nothing; request a new erasure instead"}
	case StatusHeld:
		return nil, &StateError{Action: "replay", Status: j.Status, Hint: "release the legal hold first"}
	}
	var picked []*Task
	for i := range j.Tasks {
		t := &j.Tasks[i]
		switch {
		case sel.Category == "" && t.Status == TaskFailed:
		case sel.Category != "" && t.Category == sel.Category && (sel.Stage == "" || t.Stage == sel.Stage):
			if !t.Status.Terminal() {
				return nil, fmt.Errorf("%w: %s is %s; replay it once it has an outcome", ErrConflict, t.Key(), t.Status)
			}
		default:
			continue
		}
		picked = append(picked, t)
	}
	if len(picked) == 0 {
		if sel.Category == "" {
			return nil, fmt.Errorf("%w: the job has no failed task to replay", ErrConflict)
		}
		return nil, fmt.Errorf("%w: the job has no task %s", ErrConflict, TaskKey(sel))
	}
	var keys []TaskKey
	for _, t := range picked {
		t.PriorAttempts = t.Attempts
		t.PriorItems = t.ItemsPurged
		t.Generation++
		t.Status = TaskScheduled
		if len(t.DependsOn) > 0 {
			t.Status = TaskWaiting
		}
		t.DueAt = at
		t.DispatchedAt, t.FinishedAt = nil, nil
		t.Error, t.ErrorCode = "", ""
		t.record(Attempt{Generation: t.Generation, At: at, Outcome: OutcomeReplayed, Actor: actor, Reason: reason})
		keys = append(keys, t.Key())
	}
	// Tasks that failed only because a replayed one had failed run again
	// too, once it succeeds.
	for i := range j.Tasks {
		t := &j.Tasks[i]
		if t.Status == TaskFailed && t.ErrorCode == "dependency_failed" {
			t.PriorAttempts = t.Attempts
			t.PriorItems = t.ItemsPurged
			t.Generation++
			t.Status = TaskWaiting
			t.DueAt = at
			t.FinishedAt = nil
			t.Error, t.ErrorCode = "", ""
			t.record(Attempt{Generation: t.Generation, At: at, Outcome: OutcomeReplayed, Actor: actor, Reason: reason})
			keys = append(keys, t.Key())
		}
	}
	j.release(at)
	j.Status = StatusRunning
	j.FinishedAt = nil
	j.Error = ""
	j.touch(at)
	return keys, nil
}

// touch moves UpdatedAt to at unless it is already later: concurrent
// updates of one job commit in any order, and a rebuild from the trail
// must arrive at the same time whatever that order was.
func (j *Job) touch(at time.Time) {
	if at.After(j.UpdatedAt) {
		j.UpdatedAt = at
	}
}
