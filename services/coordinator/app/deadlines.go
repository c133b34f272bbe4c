package app

import (
	"context"
	"sort"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// MaxDeadlineScan bounds how many running jobs a deadline query reads.
const MaxDeadlineScan = 100000

// Deadlines returns jobs that still owe an erasure (pending, running or
// held) whose deadline is within `within` from
// now (overdue ones included), or with overdueOnly those already past it,
// earliest deadline first, at most limit.
func (s *Service) Deadlines(ctx context.Context, within time.Duration, overdueOnly bool, limit int) ([]*jobs.Job, error) {
	now := s.now()
	var out []*jobs.Job
	// Held jobs count: a legal hold is a reason to wait, and the privacy
	// team must see the deadline it puts at risk (or extend it).
	err := s.store.ScanStatuses(ctx, []jobs.Status{jobs.StatusPending, jobs.StatusRunning, jobs.StatusHeld}, func(j *jobs.Job) bool {
		switch {
		case j.Deadline.IsZero():
		case overdueOnly && now.After(j.Deadline):
			out = append(out, j)
		case !overdueOnly && j.Deadline.Sub(now) <= within:
			out = append(out, j)
		}
		return true
	}, MaxDeadlineScan)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Deadline.Before(out[b].Deadline) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
