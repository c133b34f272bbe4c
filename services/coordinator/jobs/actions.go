package jobs

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/lethe-privacy/lethe/services/coordinator/policy"
)

// Calendar dates a task at the end of the calendar year of an anchor date
// plus whole years (policy.CalendarRule), once a task it depends on has
// reported the anchor.
type Calendar struct {
	Anchor    string `json:"anchor"`
	PlusYears int    `json:"plus_years"`
	Zone      string `json:"zone"`
}

// Due is when the task is due for anchor a.
func (c Calendar) Due(a time.Time) (time.Time, error) {
	return policy.CalendarRule{EndOfYearOf: c.Anchor, PlusYears: c.PlusYears, Zone: c.Zone}.Due(a)
}

// ActionKind names a privacy action on a job.
type ActionKind string

// Actions on a job. Each is attributed and recorded with its reason.
const (
	// ActionCancel undoes a deletion during its grace period.
	ActionCancel ActionKind = "cancel"
	// ActionForce skips the grace period: the stages run now.
	ActionForce ActionKind = "force"
	// ActionHold puts the job under legal hold: nothing is dispatched.
	ActionHold ActionKind = "hold"
	// ActionRelease lifts the hold; the job resumes where it stopped.
	ActionRelease ActionKind = "release"
	// ActionExtend moves the deadline (GDPR Art. 12(3)).
	ActionExtend ActionKind = "extend"
)

// Action is one entry of a job's action log.
type Action struct {
	Kind   ActionKind `json:"kind"`
	Actor  string     `json:"actor"`
	Reason string     `json:"reason"`
	Ticket string     `json:"ticket,omitempty"`
	At     time.Time  `json:"at"`
	From   Status     `json:"from"`
	To     Status     `json:"to"`
	// Months is the extension, for ActionExtend.
	Months int `json:"months,omitempty"`
}

// ActionRequest is a caller's action on a job.
type ActionRequest struct {
	Kind   ActionKind
	Actor  string
	Reason string
	// Ticket references the privacy team's case; required for force.
	Ticket string
	// Months extends the deadline, for extend: 1 or 2 (in total at most
	// two further months).
	Months int
}

// MaxExtensionMonths is how far GDPR Art. 12(3) lets the deadline move.
const MaxExtensionMonths = 2

// Validate checks the request on its own (not against a job).
func (r ActionRequest) Validate() error {
	switch r.Kind {
	case ActionCancel, ActionForce, ActionHold, ActionRelease, ActionExtend:
	default:
		return fmt.Errorf("%w: unknown action %q (cancel, force, hold, release or extend)", ErrInvalid, r.Kind)
	}
	if err := ValidatePrincipal(r.Actor); err != nil {
		return err
	}
	if err := validateText("reason", r.Reason, MaxReasonLen); err != nil {
		return err
	}
	if r.Reason == "" {
		return fmt.Errorf("%w: %s needs a reason", ErrInvalid, r.Kind)
	}
	if err := validateText("ticket", r.Ticket, 128); err != nil {
		return err
	}
	if r.Kind == ActionForce && r.Ticket == "" {
		return fmt.Errorf("%w: force needs a ticket reference (the privacy team's case, e.g. PRIV-1234)", ErrInvalid)
	}
	if r.Kind == ActionExtend {
		if r.Months < 1 || r.Months > MaxExtensionMonths {
			return fmt.Errorf("%w: extend by 1 or 2 months (GDPR Art. 12(3) allows two further months in all)", ErrInvalid)
		}
	} else if r.Months != 0 {
		return fmt.Errorf("%w: months is only for extend", ErrInvalid)
	}
	return nil
}

func validateText(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, field, maxLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	}
	for _, c := range s {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("%w: %s contains control characters", ErrInvalid, field)
		}
	}
	return nil
}

// StateError is an action the job's current status does not allow. It
// wraps ErrConflict; the API answers 409 with Status.
type StateError struct {
	Action string
	Status Status
	Hint   string
}

func (e *StateError) Error() string {
	msg := fmt.Sprintf("cannot %s a %s job", e.Action, e.Status)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *StateError) Unwrap() error { return ErrConflict }

// CurrentStatus returns the status carried by a StateError in err's
// chain.
func CurrentStatus(err error) (Status, bool) {
	var se *StateError
	if errors.As(err, &se) {
		return se.Status, true
	}
	return "", false
}

// Act applies a validated action at time at. It returns a *StateError when
// the job's status does not allow it. The rules:
//
//	cancel   pending                      → cancelled (nothing ran)
//	force    pending                      → running (every stage moved
//	                                         earlier by the grace left)
//	hold     pending, running, erased     → held
//	release  held                         → the status before the hold
//	extend   pending, running, held       → same status, later deadline
func (j *Job) Act(r ActionRequest, at time.Time) (Action, error) {
	if err := r.Validate(); err != nil {
		return Action{}, err
	}
	at = at.UTC()
	a := Action{Kind: r.Kind, Actor: r.Actor, Reason: r.Reason, Ticket: r.Ticket, At: at, From: j.Status, Months: r.Months}
	deny := func(hint string) (Action, error) {
		return Action{}, &StateError{Action: string(r.Kind), Status: j.Status, Hint: hint}
	}
	switch r.Kind {
	case ActionCancel:
		if j.Status != StatusPending {
			return deny("only a job in its grace period can be cancelled; the erasure has started or ended")
		}
		j.Status = StatusCancelled
		for i := range j.Tasks {
			if t := &j.Tasks[i]; !t.Status.Terminal() {
				t.Status = TaskCancelled
				t.FinishedAt = &at
			}
		}
		j.FinishedAt = &at
	case ActionForce:
		if j.Status != StatusPending {
			return deny("only a job in its grace period can be forced; it is not waiting for one")
		}
		skip := j.GraceUntil.Sub(at)
		for i := range j.Tasks {
			t := &j.Tasks[i]
			if t.Status.Terminal() || skip <= 0 {
				continue
			}
			// The whole schedule moves earlier by the grace that is
			// skipped; nothing moves before now.
			t.DueAt = t.DueAt.Add(-skip)
			if t.DueAt.Before(at) {
				t.DueAt = at
			}
		}
		j.GraceUntil = at
		j.Status = StatusRunning
	case ActionHold:
		if !j.Status.Dispatchable() {
			return deny("only a pending, running or erased job can be held")
		}
		j.HeldFrom = j.Status
		j.Status = StatusHeld
	case ActionRelease:
		if j.Status != StatusHeld {
			return deny("only a held job can be released")
		}
		j.Status = j.HeldFrom
		j.HeldFrom = ""
		if j.Status == StatusPending && !at.Before(j.GraceUntil) && j.anyDispatched() {
			j.Status = StatusRunning
		}
		j.settle(at)
	case ActionExtend:
		if !j.Status.OwesErasure() {
			return deny("the deadline of a job that has erased the data or ended no longer applies")
		}
		orig := j.Deadline
		if j.OriginalDeadline != nil {
			orig = *j.OriginalDeadline
		}
		used := j.extendedMonths()
		if used+r.Months > MaxExtensionMonths {
			return Action{}, fmt.Errorf("%w: the deadline was already extended by %d month(s); GDPR Art. 12(3) allows %d in all", ErrInvalid, used, MaxExtensionMonths)
		}
		if j.OriginalDeadline == nil {
			j.OriginalDeadline = &orig
		}
		j.Deadline = AddMonths(orig, used+r.Months)
	}
	j.touch(at)
	a.To = j.Status
	j.Actions = append(j.Actions, a)
	return a, nil
}

func (j *Job) anyDispatched() bool {
	for i := range j.Tasks {
		if j.Tasks[i].DispatchedAt != nil {
			return true
		}
	}
	return false
}

func (j *Job) extendedMonths() int {
	n := 0
	for _, a := range j.Actions {
		if a.Kind == ActionExtend {
			n += a.Months
		}
	}
	return n
}

// AddMonths adds calendar months, clamping to the month's last day as
// DeadlineFor does (31 January + 1 month is 28 or 29 February).
func AddMonths(t time.Time, n int) time.Time {
	t = t.UTC()
	d := t.AddDate(0, n, 0)
	if d.Day() != t.Day() {
		d = d.AddDate(0, 0, -d.Day())
	}
	return d
}

// ExtensionMonths returns the months an extension to newDeadline adds to
// the job's deadline (for a rebuild, whose event records the new
// deadline), or 0 when no whole extension gives it.
func (j *Job) ExtensionMonths(newDeadline time.Time) int {
	orig := j.Deadline
	if j.OriginalDeadline != nil {
		orig = *j.OriginalDeadline
	}
	used := j.extendedMonths()
	for m := 1; used+m <= MaxExtensionMonths; m++ {
		if AddMonths(orig, used+m).Equal(newDeadline.UTC()) {
			return m
		}
	}
	return 0
}
