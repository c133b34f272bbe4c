package apiv1

// RebuildSummary answers POST /v1/admin/rebuild: what the rebuild of the
// Redis state from the lifecycle stream read, wrote and could not use.
type RebuildSummary struct {
	// Events read from the lifecycle stream, sequences FirstSeq..LastSeq.
	Events   uint64 `json:"events"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Applied events changed a job; Checked are job ends compared with
	// the rebuilt status; Duplicates repeated an event id; Ignored changed
	// nothing (stale or already applied).
	Applied    uint64 `json:"applied"`
	Checked    uint64 `json:"checked"`
	Duplicates uint64 `json:"duplicates"`
	Ignored    uint64 `json:"ignored"`
	// Skipped counts events by type that a rebuild does not use.
	Skipped map[string]uint64 `json:"skipped,omitempty"`
	// Undecodable, Unapplied and Mismatches are what needs a look: see
	// Problems.
	Undecodable uint64 `json:"undecodable"`
	Unapplied   uint64 `json:"unapplied"`
	Mismatches  uint64 `json:"mismatches"`
	// Jobs rebuilt, by status.
	Jobs     int            `json:"jobs"`
	ByStatus map[string]int `json:"by_status"`
	// Written jobs were stored; KeptNewer were left as they were, changed
	// by the running coordinators after the events read.
	Written   int `json:"written"`
	KeptNewer int `json:"kept_newer"`
	// Problems lists the first events or jobs not rebuilt as recorded.
	Problems        []RebuildProblem `json:"problems,omitempty"`
	ReadSeconds     float64          `json:"read_seconds"`
	DurationSeconds float64          `json:"duration_seconds"`
}

// RebuildProblem is an event or job a rebuild could not restore as
// recorded. Kind is "undecodable", "invalid_event", "no_job_created",
// "out_of_order" or "status_mismatch".
type RebuildProblem struct {
	JobID  string `json:"job_id,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}
