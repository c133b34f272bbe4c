package jobs

import "time"

// BulkReplay selects failed jobs to replay.
type BulkReplay struct {
	// Since keeps jobs that failed within this long before now; 0 keeps all.
	Since time.Duration
	// Category keeps jobs whose task of this category failed, and replays
	// only those tasks; "" keeps every failed job and replays its failed
	// tasks.
	Category string
	// DryRun lists the matches without replaying anything.
	DryRun bool
	// Limit bounds the jobs handled; default and maximum 10,000.
	Limit int
	// Actor and Reason are recorded with every replay.
	Actor, Reason string
}

// BulkMatch is one job a bulk replay selected, and what became of it.
type BulkMatch struct {
	JobID      string
	AccountID  string
	FinishedAt time.Time
	Tasks      []TaskKey
	// Result is "matched" (dry run), "replayed", or "conflict" with Error.
	Result string
	Error  string
}

// MaxBulk bounds one bulk replay.
const MaxBulk = 10000
