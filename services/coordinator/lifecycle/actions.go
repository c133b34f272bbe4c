package lifecycle

import (
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

var actionTypes = map[jobs.ActionKind]erasurev1.EventType{
	jobs.ActionCancel:  erasurev1.EventType_EVENT_TYPE_JOB_CANCELLED,
	jobs.ActionForce:   erasurev1.EventType_EVENT_TYPE_JOB_FORCED,
	jobs.ActionHold:    erasurev1.EventType_EVENT_TYPE_JOB_HELD,
	jobs.ActionRelease: erasurev1.EventType_EVENT_TYPE_JOB_RELEASED,
	jobs.ActionExtend:  erasurev1.EventType_EVENT_TYPE_DEADLINE_EXTENDED,
}

// Acted is the event of a privacy action on a job. n is the action's
// position in the job's action log, which makes a second hold (after a
// release) a new event rather than a duplicate.
func Acted(j *jobs.Job, a jobs.Action, n int) *erasurev1.LifecycleEvent {
	ev := base(j, j.ID+":action:"+strconv.Itoa(n)+":"+string(a.Kind), actionTypes[a.Kind], a.At)
	ev.Actor = a.Actor
	ev.Reason = a.Reason
	ev.Ticket = a.Ticket
	ev.PriorStatus = string(a.From)
	switch a.Kind {
	case jobs.ActionExtend:
		ev.Deadline = timestamppb.New(j.Deadline)
	case jobs.ActionForce:
		ev.GraceUntil = timestamppb.New(j.GraceUntil)
		// The new due times, so that a rebuild moves the tasks too.
		for _, t := range j.Tasks {
			ref := &erasurev1.TaskRef{Category: t.Category, Stage: t.Stage, After: durationpb.New(t.DueAt.Sub(j.CreatedAt))}
			ev.Tasks = append(ev.Tasks, ref)
		}
		ev.DueAt = timestamppb.New(a.At)
	}
	return ev
}

// Erased is the event of a job whose erasing stages are all done: only
// retention stages, each with its date, remain.
func Erased(j *jobs.Job) *erasurev1.LifecycleEvent {
	at := j.UpdatedAt
	if j.ErasedAt != nil {
		at = *j.ErasedAt
	}
	ev := base(j, j.ID+":erased:"+strconv.FormatUint(j.GenerationSum(), 10), erasurev1.EventType_EVENT_TYPE_JOB_ERASED, at)
	ev.Actor = "coordinator"
	ev.ItemsPurged = j.ItemsPurged()
	ev.Anchors = anchors(j)
	for _, t := range j.Tasks {
		if t.Retention && !t.Status.Terminal() {
			ref := &erasurev1.TaskRef{Category: t.Category, Stage: t.Stage, Action: t.Action}
			setTaskPolicy(ref, &t)
			ev.Tasks = append(ev.Tasks, ref)
		}
	}
	return ev
}

// Scheduled is the event of a task dated by its calendar rule once the
// anchor it is reckoned from was reported.
func Scheduled(j *jobs.Job, t *jobs.Task, at time.Time) *erasurev1.LifecycleEvent {
	ev := base(j, taskEventID(j, t, "scheduled"), erasurev1.EventType_EVENT_TYPE_TASK_SCHEDULED, at)
	ev.Actor = "coordinator"
	setTask(ev, t)
	ev.DueAt = timestamppb.New(t.DueAt)
	ev.Anchors = anchors(j)
	if t.Calendar != nil {
		ev.Reason = "dated by the retention policy's calendar rule from " + t.Calendar.Anchor
	}
	return ev
}

func setPolicy(ev *erasurev1.LifecycleEvent, j *jobs.Job) {
	ev.PolicyVersion = j.PolicyVersion
	ev.PolicyFingerprint = j.PolicyFingerprint
	if !j.GraceUntil.IsZero() {
		ev.GraceUntil = timestamppb.New(j.GraceUntil)
	}
}

func setTaskPolicy(ref *erasurev1.TaskRef, t *jobs.Task) {
	ref.LegalBasis = t.LegalBasis
	ref.Retention = t.Retention
	if c := t.Calendar; c != nil {
		ref.CalendarAnchor = c.Anchor
		ref.CalendarPlusYears = int32(c.PlusYears)
		ref.CalendarZone = c.Zone
	}
}

func anchors(j *jobs.Job) map[string]*timestamppb.Timestamp {
	if len(j.Anchors) == 0 {
		return nil
	}
	out := make(map[string]*timestamppb.Timestamp, len(j.Anchors))
	for k, v := range j.Anchors {
		out[k] = timestamppb.New(v)
	}
	return out
}
