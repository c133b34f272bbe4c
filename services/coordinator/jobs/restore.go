package jobs

import (
	"fmt"
	"time"
)

// Restore creates the job that a JOB_CREATED lifecycle event describes:
// New's job with the recorded id, creation time and plan, and the deadline
// that was computed when the job was accepted (a later change of
// DeadlineFor must not move the deadline of a job already running). A zero
// deadline keeps DeadlineFor's. Errors are New's.
func Restore(id string, req Request, plan Plan, createdAt, deadline time.Time) (*Job, error) {
	j, err := NewPlanned(id, req, plan, createdAt)
	if err != nil {
		return nil, err
	}
	if !deadline.IsZero() {
		j.Deadline = deadline.UTC()
	}
	return j, nil
}

// SetDispatchedAt records when generation gen of task k was published, for
// a task whose outcome is already known. The dispatcher marks a task
// dispatched and records the event afterwards, so its TASK_DISPATCHED
// event can come after the report's event; replayed in stream order, the
// report then set DispatchedAt to its own time (ApplyReport's fallback)
// and this restores the real one. It changes nothing and returns false
// when the task is of another generation or has no outcome yet (use
// MarkDispatched then).
func (j *Job) SetDispatchedAt(k TaskKey, gen uint32, at time.Time) (bool, error) {
	t, err := j.Task(k)
	if err != nil {
		return false, err
	}
	if t.Generation != gen || !t.Status.Terminal() {
		return false, nil
	}
	at = at.UTC()
	if t.DispatchedAt != nil && t.DispatchedAt.Equal(at) {
		return false, nil
	}
	t.DispatchedAt = &at
	return true, nil
}

// ParseTaskKey reads a TaskKey written by TaskKey.String ("category/stage").
// Categories never contain a slash (they are lower-case names), so the
// first slash separates the two.
func ParseTaskKey(s string) (TaskKey, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			if i == 0 || i == len(s)-1 {
				break
			}
			return TaskKey{Category: s[:i], Stage: s[i+1:]}, nil
		}
	}
	return TaskKey{}, fmt.Errorf("%w: task %q is not category/stage", ErrInvalid, s)
}
