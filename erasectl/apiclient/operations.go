package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// ListDeadLetters returns up to limit dead letters of a category ("" for
// all), oldest first, and how many there are.
func (c *Client) ListDeadLetters(ctx context.Context, category string, limit int) (apiv1.DeadLetterList, error) {
	q := url.Values{}
	if category != "" {
		q.Set("category", category)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out apiv1.DeadLetterList
	if err := c.do(ctx, http.MethodGet, "/v1/dead-letters", q, nil, &out); err != nil {
		return apiv1.DeadLetterList{}, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// GetDeadLetter returns one dead letter by its sequence.
func (c *Client) GetDeadLetter(ctx context.Context, seq uint64) (apiv1.DeadLetter, error) {
	var out apiv1.DeadLetter
	if err := c.do(ctx, http.MethodGet, "/v1/dead-letters/"+strconv.FormatUint(seq, 10), nil, nil, &out); err != nil {
		return apiv1.DeadLetter{}, fmt.Errorf("get dead letter %d: %w", seq, err)
	}
	return out, nil
}

// ReplayDeadLetter runs a dead letter's task again and removes the letter.
func (c *Client) ReplayDeadLetter(ctx context.Context, seq uint64, requestedBy, reason string) (apiv1.DeadLetterReplay, error) {
	body, err := json.Marshal(apiv1.ReplayRequest{RequestedBy: requestedBy, Reason: reason})
	if err != nil {
		return apiv1.DeadLetterReplay{}, fmt.Errorf("encode replay request: %w", err)
	}
	var out apiv1.DeadLetterReplay
	if err := c.do(ctx, http.MethodPost, "/v1/dead-letters/"+strconv.FormatUint(seq, 10)+"/replay", nil, body, &out); err != nil {
		return apiv1.DeadLetterReplay{}, fmt.Errorf("replay dead letter %d: %w", seq, err)
	}
	return out, nil
}

// BulkReplay selects failed jobs (POST /v1/replays) and, unless
// req.DryRun, replays them.
func (c *Client) BulkReplay(ctx context.Context, req apiv1.BulkReplayRequest) (apiv1.BulkReplayResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return apiv1.BulkReplayResponse{}, fmt.Errorf("encode bulk replay request: %w", err)
	}
	var out apiv1.BulkReplayResponse
	if err := c.do(ctx, http.MethodPost, "/v1/replays", nil, body, &out); err != nil {
		return apiv1.BulkReplayResponse{}, fmt.Errorf("bulk replay: %w", err)
	}
	return out, nil
}

// Stuck lists the tasks of running jobs that do not move
// (GET /v1/erasures?stuck=true).
func (c *Client) Stuck(ctx context.Context) (apiv1.StuckList, error) {
	var out apiv1.StuckList
	if err := c.do(ctx, http.MethodGet, "/v1/erasures", url.Values{"stuck": {"true"}}, nil, &out); err != nil {
		return apiv1.StuckList{}, fmt.Errorf("list stuck jobs: %w", err)
	}
	return out, nil
}

// Reconcile runs reconciliation: with dryRun it only reports (GET), else
// it also repairs (POST /v1/reconciliation).
func (c *Client) Reconcile(ctx context.Context, dryRun bool) (apiv1.ReconcileReport, error) {
	method, body := http.MethodPost, []byte("{}")
	if dryRun {
		method, body = http.MethodGet, nil
	}
	var out apiv1.ReconcileReport
	if err := c.do(ctx, method, "/v1/reconciliation", nil, body, &out); err != nil {
		return apiv1.ReconcileReport{}, fmt.Errorf("reconcile: %w", err)
	}
	return out, nil
}

// ListByDeadline lists running jobs whose deadline is within `within`
// (GET /v1/erasures?due_within=), or with overdue those past it,
// earliest deadline first.
func (c *Client) ListByDeadline(ctx context.Context, within time.Duration, overdue bool, limit int) (apiv1.JobList, error) {
	q := url.Values{}
	if overdue {
		q.Set("overdue", "true")
	} else {
		q.Set("due_within", within.String())
	}
	if limit > 0 {
		q.Set("page_size", strconv.Itoa(limit))
	}
	var out apiv1.JobList
	if err := c.do(ctx, http.MethodGet, "/v1/erasures", q, nil, &out); err != nil {
		return apiv1.JobList{}, fmt.Errorf("list jobs by deadline: %w", err)
	}
	return out, nil
}
