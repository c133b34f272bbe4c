package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

// ReplayFailed replays (or, in a dry run, lists) the failed jobs that b
// selects, newest first. Each job is replayed on its own; a conflict on one
// (for example, the account has a newer active job) is reported in its
// match and does not stop the others.
func (s *Service) ReplayFailed(ctx context.Context, b jobs.BulkReplay) ([]jobs.BulkMatch, error) {
	if b.Limit <= 0 || b.Limit > jobs.MaxBulk {
		b.Limit = jobs.MaxBulk
	}
	if !b.DryRun {
		if err := jobs.ValidatePrincipal(b.Actor); err != nil {
			return nil, err
		}
		if b.Reason == "" || len(b.Reason) > jobs.MaxReasonLen {
			return nil, fmt.Errorf("%w: a replay needs a reason of at most %d bytes", jobs.ErrInvalid, jobs.MaxReasonLen)
		}
	}
	cutoff := time.Time{}
	if b.Since > 0 {
		cutoff = s.now().Add(-b.Since)
	}
	var out []jobs.BulkMatch
	token := ""
	for len(out) < b.Limit {
		page, next, err := s.store.List(ctx, jobstore.Filter{Status: jobs.StatusFailed, PageSize: 500, PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, j := range page {
			if m, ok := matchFailed(j, b.Category, cutoff); ok && len(out) < b.Limit {
				out = append(out, m)
			}
		}
		if next == "" {
			break
		}
		token = next
	}
	if b.DryRun {
		return out, nil
	}
	for i := range out {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		_, _, err := s.Replay(ctx, out[i].JobID, jobs.ReplaySelector{Category: b.Category}, b.Actor, b.Reason)
		switch {
		case err == nil:
			out[i].Result = "replayed"
		case errors.Is(err, jobs.ErrConflict), errors.Is(err, jobs.ErrNotFound):
			out[i].Result, out[i].Error = "conflict", err.Error()
		default:
			return out, err
		}
	}
	return out, nil
}

func matchFailed(j *jobs.Job, category string, cutoff time.Time) (jobs.BulkMatch, bool) {
	if j.Status != jobs.StatusFailed {
		return jobs.BulkMatch{}, false
	}
	finished := j.UpdatedAt
	if j.FinishedAt != nil {
		finished = *j.FinishedAt
	}
	if finished.Before(cutoff) {
		return jobs.BulkMatch{}, false
	}
	m := jobs.BulkMatch{JobID: j.ID, AccountID: j.AccountID, FinishedAt: finished, Result: "matched"}
	for _, t := range j.Tasks {
		if t.Status == jobs.TaskFailed && (category == "" || t.Category == category) {
			m.Tasks = append(m.Tasks, t.Key())
		}
	}
	return m, len(m.Tasks) > 0
}
