// Package jobstore keeps erasure jobs in Redis: the job documents, the
// per-account guard that makes requests idempotent, the listing indexes and
// the due-time index the dispatcher reads. Every change is atomic: creation
// is one Lua script, updates are optimistic transactions (WATCH/MULTI) that
// run the jobs package's rules on the loaded job. Redis is a projection of
// the lifecycle stream; see docs/architecture.md.
package jobstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// Store is the Redis job store. It is safe for concurrent use by several
// goroutines and several coordinator processes.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	// EventTTL bounds how long a dashboard event id is remembered.
	eventTTL time.Duration
}

// Option configures a Store.
type Option func(*Store)

// WithEventTTL sets how long dashboard event ids are remembered for
// deduplication after their job ended (default 30 days).
func WithEventTTL(d time.Duration) Option { return func(s *Store) { s.eventTTL = d } }

// New returns a store whose keys all start with prefix (e.g. "lethe:").
func New(rdb redis.UniversalClient, prefix string, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: prefix, eventTTL: 30 * 24 * time.Hour}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) jobKey(id string) string         { return s.prefix + "job:" + id }
func (s *Store) activeKey(acct string) string    { return s.prefix + "active:" + acct }
func (s *Store) eventKey(id string) string       { return s.prefix + "event:" + id }
func (s *Store) allIndex() string                { return s.prefix + "idx:all" }
func (s *Store) accountIndex(acct string) string { return s.prefix + "idx:account:" + acct }
func (s *Store) statusIndex(st jobs.Status) string {
	return s.prefix + "idx:status:" + string(st)
}

// DueKey is the sorted set of scheduled tasks by due time (unix ms).
func (s *Store) DueKey() string { return s.prefix + "due" }

// ClaimedKey is the sorted set of tasks claimed for dispatch whose message
// is not known to be stored yet (dispatched, no stream sequence), by
// claim time (unix ms): the scheduler re-sends those whose publish a crash
// may have cut off.
func (s *Store) ClaimedKey() string { return s.prefix + "claimed" }

// dueMember names a task in the due index.
func dueMember(jobID string, k jobs.TaskKey) string {
	return jobID + "|" + k.Category + "|" + k.Stage
}

// ParseDueMember splits a due-index member into job id and task key.
func ParseDueMember(m string) (string, jobs.TaskKey, error) {
	parts := strings.Split(m, "|")
	if len(parts) != 3 {
		return "", jobs.TaskKey{}, fmt.Errorf("malformed due entry %q", m)
	}
	return parts[0], jobs.TaskKey{Category: parts[1], Stage: parts[2]}, nil
}

// createScript creates a job unless the account already has an active job
// or the dashboard event was already turned into one. It returns
// {job id, 1} when it created the job and {existing id, 0} otherwise.
//
// KEYS: active, event (or a dummy), job, idx:all, idx:account, idx:status, due
// ARGV: job id, job json, created ms, has event (0/1), event ttl ms,
//
//	then pairs of (due ms, due member)
var createScript = redis.NewScript(`
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, 0} end
if ARGV[4] == '1' then
  local byEvent = redis.call('GET', KEYS[2])
  if byEvent then return {byEvent, 0} end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
for i = 6, #ARGV, 2 do
  redis.call('ZADD', KEYS[7], ARGV[i], ARGV[i+1])
end
return {ARGV[1], 1}
`)

// Create stores j unless its account already has an active job (or, for a
// dashboard event, the event already made one). It returns the stored job
// and whether it was created by this call. Creation is atomic: the job,
// its guard, its indexes and its due entries appear together or not at
// all.
func (s *Store) Create(ctx context.Context, j *jobs.Job) (*jobs.Job, bool, error) {
	data, err := json.Marshal(j)
	if err != nil {
		return nil, false, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	eventKey, hasEvent := s.prefix+"event:-", "0"
	if j.EventID != "" {
		eventKey, hasEvent = s.eventKey(j.EventID), "1"
	}
	created := strconv.FormatInt(j.CreatedAt.UnixMilli(), 10)
	keys := []string{s.activeKey(j.AccountID), eventKey, s.jobKey(j.ID), s.allIndex(), s.accountIndex(j.AccountID), s.statusIndex(j.Status), s.DueKey()}
	args := []any{j.ID, data, created, hasEvent, s.eventTTL.Milliseconds()}
	for i := range j.Tasks {
		t := &j.Tasks[i]
		if t.Status == jobs.TaskScheduled {
			args = append(args, t.DueAt.UnixMilli(), dueMember(j.ID, t.Key()))
		}
	}
	res, err := createScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("create job for account %s: %w", j.AccountID, err)
	}
	id, _ := res[0].(string)
	if isNew, _ := res[1].(int64); isNew == 1 {
		return j, true, nil
	}
	existing, err := s.Get(ctx, id)
	if err != nil {
		return nil, false, fmt.Errorf("load existing job %s of account %s: %w", id, j.AccountID, err)
	}
	return existing, false, nil
}

// Get loads a job. It returns an error wrapping jobs.ErrNotFound when there
// is none.
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	data, err := s.rdb.Get(ctx, s.jobKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get job %s: %w", id, jobs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return decode(id, data)
}

func decode(id string, data []byte) (*jobs.Job, error) {
	var j jobs.Job
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("decode job %s: %w", id, err)
	}
	return &j, nil
}

// ErrConflict is returned by Update when the job kept changing under it.
var ErrConflict = errors.New("job changed concurrently too often")

// ErrNoChange may be returned by an update function to skip the write.
var ErrNoChange = errors.New("no change")

// Update loads job id, calls fn on it and saves the result atomically
// together with its index changes. When another process changes the job
// in between, it reloads and calls fn again, so fn must only compute. If
// fn returns ErrNoChange nothing is written and Update returns the job
// and nil. Update returns an error wrapping jobs.ErrNotFound for an
// unknown id.
func (s *Store) Update(ctx context.Context, id string, fn func(*jobs.Job) error) (*jobs.Job, error) {
	key := s.jobKey(id)
	var out *jobs.Job
	txf := func(tx *redis.Tx) error {
		data, err := tx.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("update job %s: %w", id, jobs.ErrNotFound)
		}
		if err != nil {
			return err
		}
		before, err := decode(id, data)
		if err != nil {
			return err
		}
		j, _ := decode(id, data)
		if err := fn(j); err != nil {
			if errors.Is(err, ErrNoChange) {
				out = j
				return nil
			}
			return err
		}
		if before.Status.Terminal() && !j.Status.Terminal() {
			// Reopening (a replay) makes the job the account's active one
			// again, unless a newer job already is.
			ak := s.activeKey(j.AccountID)
			if err := tx.Watch(ctx, ak).Err(); err != nil {
				return err
			}
			other, err := tx.Get(ctx, ak).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if other != "" && other != id {
				return fmt.Errorf("%w: account %s has another active job %s; replay that one or wait for it", jobs.ErrConflict, j.AccountID, other)
			}
		}
		newData, err := json.Marshal(j)
		if err != nil {
			return fmt.Errorf("encode job %s: %w", id, err)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, newData, 0)
			s.indexChanges(ctx, p, before, j)
			return nil
		})
		if err == nil {
			out = j
		}
		return err
	}
	for range 50 {
		err := s.rdb.Watch(ctx, txf, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("update job %s: %w", id, ErrConflict)
}

// indexChanges queues the index updates that move a job from before to
// after.
func (s *Store) indexChanges(ctx context.Context, p redis.Pipeliner, before, after *jobs.Job) {
	if before.Status != after.Status {
		p.ZRem(ctx, s.statusIndex(before.Status), after.ID)
		p.ZAdd(ctx, s.statusIndex(after.Status), redis.Z{Score: float64(after.CreatedAt.UnixMilli()), Member: after.ID})
		if after.Status.Terminal() {
			// The account may be erased again by a new job.
			p.Del(ctx, s.activeKey(after.AccountID))
		} else if before.Status.Terminal() {
			p.Set(ctx, s.activeKey(after.AccountID), after.ID, 0)
		}
	}
	for i := range after.Tasks {
		t := &after.Tasks[i]
		m := dueMember(after.ID, t.Key())
		switch claimed := t.Status == jobs.TaskDispatched && t.MsgSeq == 0 && t.DispatchedAt != nil; {
		case claimed:
			p.ZAdd(ctx, s.ClaimedKey(), redis.Z{Score: float64(t.DispatchedAt.UnixMilli()), Member: m})
		case i < len(before.Tasks) && before.Tasks[i].Status == jobs.TaskDispatched && before.Tasks[i].MsgSeq == 0:
			p.ZRem(ctx, s.ClaimedKey(), m)
		}
		// A held or ended job has nothing due: release puts its
		// scheduled tasks back with their original due times.
		if t.Status == jobs.TaskScheduled && after.Status.Dispatchable() {
			p.ZAdd(ctx, s.DueKey(), redis.Z{Score: float64(t.DueAt.UnixMilli()), Member: m})
		} else {
			p.ZRem(ctx, s.DueKey(), m)
		}
	}
}

// DueEntry is a task whose due time has come.
type DueEntry struct {
	JobID string
	Task  jobs.TaskKey
	DueAt time.Time
}

// Due returns up to limit tasks due at or before now, earliest first.
// Malformed index entries are removed.
func (s *Store) Due(ctx context.Context, now time.Time, limit int64) ([]DueEntry, error) {
	zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key: s.DueKey(), Start: "-inf", Stop: strconv.FormatInt(now.UnixMilli(), 10), ByScore: true, Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read due tasks: %w", err)
	}
	out := make([]DueEntry, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		id, k, err := ParseDueMember(m)
		if err != nil {
			s.rdb.ZRem(ctx, s.DueKey(), m)
			continue
		}
		out = append(out, DueEntry{JobID: id, Task: k, DueAt: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}

// NextDue returns the due time of the earliest scheduled task, and false
// when none is scheduled.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, s.DueKey(), 0, 0).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read next due task: %w", err)
	}
	if len(zs) == 0 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(int64(zs[0].Score)).UTC(), true, nil
}

// Claimed returns up to limit tasks claimed for dispatch at or before
// `before` whose message is not known to be stored, oldest first.
func (s *Store) Claimed(ctx context.Context, before time.Time, limit int64) ([]DueEntry, error) {
	zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key: s.ClaimedKey(), Start: "-inf", Stop: strconv.FormatInt(before.UnixMilli(), 10), ByScore: true, Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read claimed tasks: %w", err)
	}
	out := make([]DueEntry, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		id, k, err := ParseDueMember(m)
		if err != nil {
			s.rdb.ZRem(ctx, s.ClaimedKey(), m)
			continue
		}
		out = append(out, DueEntry{JobID: id, Task: k, DueAt: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}

// DropClaimed removes a claimed entry that no longer stands for a task
// to send.
func (s *Store) DropClaimed(ctx context.Context, jobID string, k jobs.TaskKey) error {
	return s.rdb.ZRem(ctx, s.ClaimedKey(), dueMember(jobID, k)).Err()
}

// DropDue removes a due entry whose job no longer exists.
func (s *Store) DropDue(ctx context.Context, jobID string, k jobs.TaskKey) error {
	return s.rdb.ZRem(ctx, s.DueKey(), dueMember(jobID, k)).Err()
}

// Filter selects jobs to list.
type Filter struct {
	AccountID string
	Status    jobs.Status
	// PageSize is the number of jobs per page.
	PageSize int
	// PageToken continues a previous listing.
	PageToken string
}

// ErrBadPageToken is returned for a page token List did not produce.
var ErrBadPageToken = errors.New("malformed page token")

// List returns jobs newest first, and the token of the next page ("" on the
// last page).
func (s *Store) List(ctx context.Context, f Filter) ([]*jobs.Job, string, error) {
	offset := int64(0)
	if f.PageToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.PageToken)
		if err != nil {
			return nil, "", ErrBadPageToken
		}
		offset, err = strconv.ParseInt(strings.TrimPrefix(string(raw), "o:"), 10, 64)
		if err != nil || offset < 0 || !strings.HasPrefix(string(raw), "o:") {
			return nil, "", ErrBadPageToken
		}
	}
	index := s.allIndex()
	needStatusCheck := false
	switch {
	case f.AccountID != "":
		index = s.accountIndex(f.AccountID)
		needStatusCheck = f.Status != ""
	case f.Status != "":
		index = s.statusIndex(f.Status)
	}
	size := int64(f.PageSize)
	var out []*jobs.Job
	// With both filters the account index is walked and filtered by
	// status; an account has few jobs, so this stays cheap.
	for len(out) < int(size) {
		ids, err := s.rdb.ZRevRange(ctx, index, offset, offset+size-1).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		if len(ids) == 0 {
			return out, "", nil
		}
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = s.jobKey(id)
		}
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, "", fmt.Errorf("load listed jobs: %w", err)
		}
		for i, v := range vals {
			offset++
			str, ok := v.(string)
			if !ok {
				continue
			}
			j, err := decode(ids[i], []byte(str))
			if err != nil {
				return nil, "", err
			}
			if needStatusCheck && j.Status != f.Status {
				continue
			}
			out = append(out, j)
			if len(out) == int(size) {
				break
			}
		}
		if int64(len(ids)) < size && len(out) < int(size) {
			return out, "", nil
		}
	}
	more, err := s.rdb.ZCard(ctx, index).Result()
	if err != nil {
		return nil, "", fmt.Errorf("count jobs: %w", err)
	}
	if offset >= more {
		return out, "", nil
	}
	return out, base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.FormatInt(offset, 10))), nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.rdb.Ping(ctx).Err()
}
