package jobs

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var a0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// planWithRetention: backups first, contacts depending on it, and a billing
// pair whose second stage is a calendar-dated retention stage.
func planWithRetention() Plan {
	return Plan{
		Grace: 14 * 24 * time.Hour, PolicyVersion: "test.1", PolicyFingerprint: "sha256:test",
		Tasks: []TaskSpec{
			{Category: "backups", Stage: "erase", Action: "suppress", After: 14 * 24 * time.Hour},
			{Category: "contacts", Stage: "erase", Action: "delete", After: 14 * 24 * time.Hour, DependsOn: []TaskKey{{"backups", "erase"}}},
			{Category: "billing", Stage: "erase", Action: "pseudonymise", After: 14 * 24 * time.Hour, DependsOn: []TaskKey{{"backups", "erase"}}},
			{Category: "billing", Stage: "delete_retained", Action: "delete_retained", After: 14 * 24 * time.Hour, Retention: true,
				Calendar: &Calendar{Anchor: "invoice_issued", PlusYears: 8, Zone: "Europe/Berlin"}, DependsOn: []TaskKey{{"billing", "erase"}}},
		},
	}
}

func newPendingJob(t *testing.T) *Job {
	t.Helper()
	j, err := NewPlanned("job-1", Request{AccountID: "acc-1", Origin: OriginDashboard, RequestedBy: "dashboard:acc-1"}, planWithRetention(), a0)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != StatusPending {
		t.Fatalf("new job with grace is %s, want pending", j.Status)
	}
	return j
}

// jobIn returns a job brought to status st by legal steps.
func jobIn(t *testing.T, st Status) *Job {
	t.Helper()
	j := newPendingJob(t)
	at := a0.Add(time.Hour)
	act := func(k ActionKind) {
		t.Helper()
		req := ActionRequest{Kind: k, Actor: "privacy:t", Reason: "r", Ticket: "PRIV-1"}
		if _, err := j.Act(req, at); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	report := func(k TaskKey, ok bool) {
		t.Helper()
		r := Report{Task: k, Generation: 1, Succeeded: ok, Attempt: 1, At: at, Error: "boom"}
		if k == (TaskKey{"billing", "erase"}) {
			r.Anchors = map[string]time.Time{"invoice_issued": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
		}
		if _, err := j.ApplyReport(r); err != nil {
			t.Fatal(err)
		}
	}
	switch st {
	case StatusPending:
	case StatusRunning:
		act(ActionForce)
	case StatusHeld:
		act(ActionHold)
	case StatusCancelled:
		act(ActionCancel)
	case StatusErased, StatusCompleted:
		act(ActionForce)
		report(TaskKey{"backups", "erase"}, true)
		report(TaskKey{"contacts", "erase"}, true)
		report(TaskKey{"billing", "erase"}, true)
		if st == StatusCompleted {
			report(TaskKey{"billing", "delete_retained"}, true)
		}
	case StatusFailed:
		act(ActionForce)
		report(TaskKey{"backups", "erase"}, false)
	}
	if j.Status != st {
		t.Fatalf("built a %s job, want %s", j.Status, st)
	}
	return j
}

// TestActTransitions runs every action from every status: the legal ones
// land on the documented status, the others answer a StateError naming
// the current status and change nothing.
func TestActTransitions(t *testing.T) {
	want := map[Status]map[ActionKind]Status{
		StatusPending:   {ActionCancel: StatusCancelled, ActionForce: StatusRunning, ActionHold: StatusHeld, ActionExtend: StatusPending},
		StatusRunning:   {ActionHold: StatusHeld, ActionExtend: StatusRunning},
		StatusHeld:      {ActionRelease: StatusPending, ActionExtend: StatusHeld},
		StatusErased:    {ActionHold: StatusHeld},
		StatusCompleted: {},
		StatusFailed:    {},
		StatusCancelled: {},
	}
	kinds := []ActionKind{ActionCancel, ActionForce, ActionHold, ActionRelease, ActionExtend}
	for _, from := range Statuses {
		for _, k := range kinds {
			t.Run(string(from)+"/"+string(k), func(t *testing.T) {
				j := jobIn(t, from)
				before := *j
				req := ActionRequest{Kind: k, Actor: "privacy:t", Reason: "because", Ticket: "PRIV-2"}
				if k == ActionExtend {
					req.Months = 1
				}
				a, err := j.Act(req, a0.Add(2*time.Hour))
				to, legal := want[from][k]
				if !legal {
					st, ok := CurrentStatus(err)
					if !ok || st != from || !errors.Is(err, ErrConflict) {
						t.Fatalf("%s on a %s job: err %v, want a StateError naming %s", k, from, err, from)
					}
					if j.Status != before.Status || len(j.Actions) != len(before.Actions) || !j.Deadline.Equal(before.Deadline) {
						t.Fatalf("a refused %s changed the job", k)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s on a %s job: %v", k, from, err)
				}
				if j.Status != to || a.From != from || a.To != to || a.Actor != "privacy:t" || a.Reason != "because" {
					t.Fatalf("%s on %s: job %s, action %+v; want %s", k, from, j.Status, a, to)
				}
				if j.Actions[len(j.Actions)-1] != a {
					t.Fatal("the action is not in the job's action log")
				}
			})
		}
	}
}

func TestCancelDuringGraceRunsNothing(t *testing.T) {
	j := newPendingJob(t)
	if _, err := j.Act(ActionRequest{Kind: ActionCancel, Actor: "dashboard:acc-1", Reason: "customer restored the account"}, a0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := range j.Tasks {
		if j.Tasks[i].Status != TaskCancelled {
			t.Fatalf("task %s is %s after cancel", j.Tasks[i].Key(), j.Tasks[i].Status)
		}
		if ok, _ := j.MarkDispatched(j.Tasks[i].Key(), 1, a0.Add(20*24*time.Hour)); ok {
			t.Fatalf("a cancelled job's task %s was dispatched", j.Tasks[i].Key())
		}
	}
	if _, err := j.Replay(ReplaySelector{Category: "contacts"}, "sre:t", "r", a0); !errors.Is(err, ErrConflict) {
		t.Fatalf("replay of a cancelled job: %v, want a conflict", err)
	}
}

func TestForceMovesTheScheduleEarlier(t *testing.T) {
	j := newPendingJob(t)
	now := a0.Add(24 * time.Hour) // 13 days of grace left
	if _, err := j.Act(ActionRequest{Kind: ActionForce, Actor: "privacy:t", Reason: "r"}, now); err == nil {
		t.Fatal("force without a ticket was accepted")
	}
	if _, err := j.Act(ActionRequest{Kind: ActionForce, Actor: "privacy:t", Reason: "DSR by mail", Ticket: "PRIV-9"}, now); err != nil {
		t.Fatal(err)
	}
	if !j.GraceUntil.Equal(now) {
		t.Errorf("grace until %s, want %s", j.GraceUntil, now)
	}
	b, _ := j.Task(TaskKey{"backups", "erase"})
	if !b.DueAt.Equal(now) {
		t.Errorf("backups/erase due %s, want now %s", b.DueAt, now)
	}
}

func TestHoldStopsDispatchAndReleaseResumes(t *testing.T) {
	j := jobIn(t, StatusRunning)
	k := TaskKey{"backups", "erase"}
	if _, err := j.Act(ActionRequest{Kind: ActionHold, Actor: "privacy:t", Reason: "tax audit"}, a0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := j.MarkDispatched(k, 1, a0.Add(3*time.Hour)); ok {
		t.Fatal("a held job's due task was dispatched")
	}
	if _, err := j.Act(ActionRequest{Kind: ActionRelease, Actor: "privacy:t", Reason: "audit closed"}, a0.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if j.Status != StatusRunning || j.HeldFrom != "" {
		t.Fatalf("released job is %s (held from %q), want running", j.Status, j.HeldFrom)
	}
	if ok, _ := j.MarkDispatched(k, 1, a0.Add(5*time.Hour)); !ok {
		t.Fatal("the released job's due task was not dispatched")
	}
}

func TestReportsDuringHoldSettleOnRelease(t *testing.T) {
	j := jobIn(t, StatusRunning)
	at := a0.Add(3 * time.Hour)
	if _, err := j.Act(ActionRequest{Kind: ActionHold, Actor: "privacy:t", Reason: "hold"}, at); err != nil {
		t.Fatal(err)
	}
	// Every erasing stage reports while held (they were already with their
	// workers): the job stays held, and becomes erased on release.
	for _, k := range []TaskKey{{"backups", "erase"}, {"contacts", "erase"}, {"billing", "erase"}} {
		if _, err := j.ApplyReport(Report{Task: k, Generation: 1, Succeeded: true, Attempt: 1, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	if j.Status != StatusHeld {
		t.Fatalf("job is %s while held", j.Status)
	}
	if _, err := j.Act(ActionRequest{Kind: ActionRelease, Actor: "privacy:t", Reason: "done"}, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if j.Status != StatusErased || j.ErasedAt == nil {
		t.Fatalf("released job is %s, want erased", j.Status)
	}
}

func TestExtendAtMostTwoMonths(t *testing.T) {
	j := jobIn(t, StatusRunning)
	orig := j.Deadline
	ext := func(m int) error {
		_, err := j.Act(ActionRequest{Kind: ActionExtend, Actor: "privacy:t", Reason: "complex request", Months: m}, a0.Add(time.Hour))
		return err
	}
	if err := ext(3); !errors.Is(err, ErrInvalid) {
		t.Fatalf("extend by 3 months: %v, want invalid", err)
	}
	if err := ext(1); err != nil {
		t.Fatal(err)
	}
	if err := ext(1); err != nil {
		t.Fatal(err)
	}
	if want := AddMonths(orig, 2); !j.Deadline.Equal(want) || !j.OriginalDeadline.Equal(orig) {
		t.Fatalf("deadline %s (original %v), want %s (original %s)", j.Deadline, j.OriginalDeadline, want, orig)
	}
	if err := ext(1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a third month: %v, want invalid", err)
	}
	if m := j.ExtensionMonths(AddMonths(orig, 2)); m != 0 {
		t.Fatalf("ExtensionMonths after two months used = %d", m)
	}
}

func TestCalendarStageDatedByAnchor(t *testing.T) {
	j := jobIn(t, StatusErased)
	k := TaskKey{"billing", "delete_retained"}
	task, _ := j.Task(k)
	// Issued 1 March 2026, kept 8 years from the end of 2026: due
	// 1 January 2035, 00:00 in Berlin.
	want := time.Date(2035, 1, 1, 0, 0, 0, 0, mustZone(t, "Europe/Berlin")).UTC()
	if task.Status != TaskScheduled || !task.DueAt.Equal(want) {
		t.Fatalf("delete_retained %s due %s, want scheduled for %s", task.Status, task.DueAt, want)
	}
	if j.ErasedAt == nil || !j.Status.Dispatchable() || j.Status.OwesErasure() {
		t.Fatalf("erased job: erased_at %v, dispatchable %v, owes erasure %v", j.ErasedAt, j.Status.Dispatchable(), j.Status.OwesErasure())
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestActionRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  ActionRequest
	}{
		{"unknown kind", ActionRequest{Kind: "delete", Actor: "privacy:t", Reason: "r"}},
		{"no actor", ActionRequest{Kind: ActionHold, Reason: "r"}},
		{"e-mail actor", ActionRequest{Kind: ActionHold, Actor: "jane@example.com", Reason: "r"}},
		{"no reason", ActionRequest{Kind: ActionHold, Actor: "privacy:t"}},
		{"control chars", ActionRequest{Kind: ActionHold, Actor: "privacy:t", Reason: "a\x00b"}},
		{"force without ticket", ActionRequest{Kind: ActionForce, Actor: "privacy:t", Reason: "r"}},
		{"months on hold", ActionRequest{Kind: ActionHold, Actor: "privacy:t", Reason: "r", Months: 1}},
		{"extend 0", ActionRequest{Kind: ActionExtend, Actor: "privacy:t", Reason: "r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.req.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%+v) = %v, want ErrInvalid", tt.req, err)
			}
		})
	}
}

// TestLifecycleInvariants drives random sequences of actions, dispatches
// and reports through jobs and checks after every step what must always
// hold, whatever the order.
func TestLifecycleInvariants(t *testing.T) {
	kinds := []ActionKind{ActionCancel, ActionForce, ActionHold, ActionRelease, ActionExtend}
	for seed := range uint64(400) {
		rng := rand.New(rand.NewPCG(seed, 7))
		j := newPendingJob(t)
		at := a0
		var wasCancelled bool
		for step := 0; step < 40; step++ {
			at = at.Add(time.Duration(rng.IntN(48)) * time.Hour)
			before := j.Status
			ranBefore := countRun(j)
			switch rng.IntN(3) {
			case 0:
				req := ActionRequest{Kind: kinds[rng.IntN(len(kinds))], Actor: "privacy:p", Reason: "r", Ticket: "T-1"}
				if req.Kind == ActionExtend {
					req.Months = 1 + rng.IntN(2)
				}
				_, _ = j.Act(req, at)
			case 1:
				k := j.Tasks[rng.IntN(len(j.Tasks))].Key()
				_, _ = j.MarkDispatched(k, 1, at)
			case 2:
				k := j.Tasks[rng.IntN(len(j.Tasks))].Key()
				r := Report{Task: k, Generation: 1, Succeeded: rng.IntN(5) > 0, Attempt: 1, At: at, Error: "x"}
				if tk, _ := j.Task(k); tk.Status == TaskDispatched {
					_, _ = j.ApplyReport(r)
				}
			}
			if msg := checkInvariants(j, before, ranBefore, wasCancelled); msg != "" {
				t.Fatalf("seed %d step %d: %s (job %s, tasks %+v)", seed, step, msg, j.Status, j.Tasks)
			}
			wasCancelled = wasCancelled || j.Status == StatusCancelled
		}
	}
}

// countRun counts tasks that were ever dispatched.
func countRun(j *Job) int {
	n := 0
	for i := range j.Tasks {
		if j.Tasks[i].DispatchedAt != nil {
			n++
		}
	}
	return n
}

func checkInvariants(j *Job, before Status, ranBefore int, wasCancelled bool) string {
	if !j.Status.Valid() {
		return "invalid status"
	}
	if before.Terminal() && j.Status != before {
		return "a terminal job changed status without a replay"
	}
	if wasCancelled && countRun(j) > 0 {
		return "a cancelled job ran a task"
	}
	if j.Status == StatusCancelled && ranBefore > 0 {
		return "a job that had run a task was cancelled"
	}
	if j.Status == StatusHeld && countRun(j) > ranBefore {
		return "a held job dispatched a task"
	}
	if j.Status == StatusPending && countRun(j) > 0 {
		return "a pending job has run a task"
	}
	if j.Status == StatusHeld && (j.HeldFrom == "" || j.HeldFrom == StatusHeld) {
		return "a held job does not know where it returns"
	}
	if j.Status == StatusCompleted {
		for i := range j.Tasks {
			if j.Tasks[i].Status != TaskSucceeded {
				return "completed with a task not succeeded"
			}
		}
	}
	if j.Status == StatusErased {
		for i := range j.Tasks {
			if t := &j.Tasks[i]; !t.Retention && t.Status != TaskSucceeded {
				return "erased with an erasing task not done"
			}
		}
	}
	if j.OriginalDeadline != nil && j.Deadline.After(AddMonths(*j.OriginalDeadline, MaxExtensionMonths)) {
		return "deadline extended beyond two months"
	}
	if j.Status == StatusFailed && !j.hasFailed() {
		return "failed without a failed task"
	}
	return ""
}
