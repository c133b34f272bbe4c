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
	"sync"
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
	updates  coalescer
}

// Option configures a Store.
type Option func(*Store)

// WithEventTTL sets how long dashboard event ids are remembered for
// deduplication after their job ended (default 30 days).
func WithEventTTL(d time.Duration) Option { return func(s *Store) { s.eventTTL = d } }

// New returns a store whose keys all start with prefix (e.g. "lethe:").
func New(rdb redis.UniversalClient, prefix string, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: prefix, eventTTL: 30 * 24 * time.Hour, updates: coalescer{turn: make(chan struct{}, 1)}}
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
//
// An update is two round trips: a read, then one script that writes only
// if the document is still the one read (a compare-and-set on its bytes)
// and applies the index changes with it. WATCH/MULTI/EXEC cost four and,
// with the dispatcher's and the reports' updates on every task, were a
// large part of the coordinator's CPU per job (docs/benchmarks.md).
// Updates asked for at the same time on other goroutines share those two
// round trips (see coalescer); fn runs on whichever goroutine flushes, so
// it must not call the store itself.
func (s *Store) Update(ctx context.Context, id string, fn func(*jobs.Job) error) (*jobs.Job, error) {
	r := &pendingUpdate{ctx: ctx, id: id, fn: fn, done: make(chan struct{})}
	s.updates.mu.Lock()
	s.updates.queue = append(s.updates.queue, r)
	s.updates.mu.Unlock()
	for {
		select {
		case <-r.done:
			return r.res.Job, r.res.Err
		case s.updates.turn <- struct{}{}:
			s.flushUpdates(r)
			<-s.updates.turn
		case <-ctx.Done():
			// Still queued, the update is skipped by the next flush;
			// being flushed, it may still land, as a write whose answer
			// was lost would.
			return nil, fmt.Errorf("update job %s: %w", id, ctx.Err())
		}
	}
}

// coalescer gathers the updates that callers on many goroutines (the
// report intake's handlers, the API) ask for at the same time, so that
// they go to Redis together: whoever gets the turn runs every waiting
// update in one UpdateMany, two round trips in all, and the others find
// theirs done. A lone update costs what it did alone: a read and a
// script.
type coalescer struct {
	mu    sync.Mutex
	queue []*pendingUpdate
	turn  chan struct{}
}

type pendingUpdate struct {
	ctx  context.Context
	id   string
	fn   func(*jobs.Job) error
	res  UpdateResult
	done chan struct{}
}

// maxCoalesced bounds the updates one flush takes.
const maxCoalesced = 256

// flushUpdates runs queued updates until mine is done.
func (s *Store) flushUpdates(mine *pendingUpdate) {
	for {
		select {
		case <-mine.done:
			return
		default:
		}
		s.updates.mu.Lock()
		n := min(len(s.updates.queue), maxCoalesced)
		batch := s.updates.queue[:n:n]
		s.updates.queue = s.updates.queue[n:]
		s.updates.mu.Unlock()
		if n == 0 {
			return
		}
		live := batch[:0:0]
		for _, r := range batch {
			if r.ctx.Err() != nil {
				r.res = UpdateResult{Err: fmt.Errorf("update job %s: %w", r.id, r.ctx.Err())}
				close(r.done)
				continue
			}
			live = append(live, r)
		}
		ids := make([]string, len(live))
		for i, r := range live {
			ids[i] = r.id
		}
		// The flush serves every caller in it: it must not end with
		// the one whose turn it is.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(mine.ctx), flushTimeout)
		res, err := s.UpdateMany(ctx, ids, func(i int, j *jobs.Job) error { return live[i].fn(j) })
		cancel()
		for i, r := range live {
			if err != nil {
				r.res = UpdateResult{Err: fmt.Errorf("update job %s: %w", r.id, err)}
			} else {
				r.res = res[i]
			}
			close(r.done)
		}
	}
}

// flushTimeout bounds one flush of coalesced updates.
const flushTimeout = 30 * time.Second

// maxUpdateAttempts bounds how often an update is tried again on top of
// a concurrent change.
const maxUpdateAttempts = 50

// prepare decodes a stored job, applies fn and returns the job with the
// script call that saves it; ops is nil when fn changed nothing
// (ErrNoChange) or failed.
func (s *Store) prepare(id string, data []byte, fn func(*jobs.Job) error) (*jobs.Job, *indexOps, error) {
	j, err := decode(id, data)
	if err != nil {
		return nil, nil, err
	}
	before := shapeOf(j)
	if err := fn(j); err != nil {
		if errors.Is(err, ErrNoChange) {
			return j, nil, nil
		}
		return nil, nil, err
	}
	newData, err := json.Marshal(j)
	if err != nil {
		return nil, nil, fmt.Errorf("encode job %s: %w", id, err)
	}
	ops := &indexOps{keys: []string{s.jobKey(id)}, args: []any{data, newData}}
	if before.status.Terminal() && !j.Status.Terminal() {
		// Reopening (a replay) makes the job the account's active one
		// again, unless a newer job already is: checked in the script.
		ops.checkFree(s.activeKey(j.AccountID), id)
	}
	s.indexChanges(ops, before, j)
	return j, ops, nil
}

// updated reads updateScript's answer: done when the job was written,
// not done (try again) when it had changed meanwhile.
func updated(j *jobs.Job, res []any) (bool, error) {
	switch code, _ := res[0].(int64); code {
	case updateWritten:
		return true, nil
	case updateChanged:
		return false, nil
	default: // updateTaken
		other, _ := res[1].(string)
		return true, fmt.Errorf("%w: account %s has another active job %s; replay that one or wait for it", jobs.ErrConflict, j.AccountID, other)
	}
}

// UpdateResult is one job's outcome in UpdateMany: the job as stored
// after the update (or as found, when fn changed nothing), or the error
// that stopped its update.
type UpdateResult struct {
	Job *jobs.Job
	Err error
}

// UpdateMany is Update for many jobs at once, in two round trips when
// nothing races: one MGET, then one pipeline of the same compare-and-set
// script Update runs, one per job. Each job is still updated atomically
// on its own; a job that changed in between is read and updated again.
// fn is called with the job's index in ids (perhaps several times) and
// must only compute. Per-job outcomes are in the results, in the order
// of ids; the error is for Redis failing the whole call.
func (s *Store) UpdateMany(ctx context.Context, ids []string, fn func(i int, j *jobs.Job) error) ([]UpdateResult, error) {
	out := make([]UpdateResult, len(ids))
	todo := make([]int, len(ids))
	for i := range ids {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == maxUpdateAttempts {
			for _, i := range todo {
				out[i].Err = fmt.Errorf("update job %s: %w", ids[i], ErrConflict)
			}
			break
		}
		keys := make([]string, len(todo))
		for n, i := range todo {
			keys[n] = s.jobKey(ids[i])
		}
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, fmt.Errorf("read %d jobs to update: %w", len(keys), err)
		}
		type call struct {
			i   int
			ops *indexOps
		}
		calls := make([]call, 0, len(todo))
		for n, i := range todo {
			data, ok := vals[n].(string)
			if !ok {
				out[i] = UpdateResult{Err: fmt.Errorf("update job %s: %w", ids[i], jobs.ErrNotFound)}
				continue
			}
			j, ops, err := s.prepare(ids[i], []byte(data), func(j *jobs.Job) error { return fn(i, j) })
			out[i] = UpdateResult{Job: j, Err: err}
			if ops != nil {
				calls = append(calls, call{i, ops})
			}
		}
		todo = todo[:0]
		if len(calls) == 0 {
			break
		}
		cmds, err := s.runUpdates(ctx, func(p redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, len(calls))
			for n, c := range calls {
				cmds[n] = updateScript.EvalSha(ctx, p, c.ops.keys, c.ops.args...)
			}
			return cmds
		})
		if err != nil {
			return nil, err
		}
		for n, c := range calls {
			res, err := cmds[n].Slice()
			if err != nil {
				out[c.i] = UpdateResult{Err: fmt.Errorf("update job %s: %w", ids[c.i], err)}
				continue
			}
			done, err := updated(out[c.i].Job, res)
			switch {
			case err != nil:
				out[c.i] = UpdateResult{Err: err}
			case !done:
				out[c.i] = UpdateResult{}
				todo = append(todo, c.i)
			}
		}
	}
	return out, nil
}

// runUpdates runs a pipeline of updateScript calls, loading the script
// first when Redis does not have it (a restart or a failover empties the
// script cache).
func (s *Store) runUpdates(ctx context.Context, queue func(redis.Pipeliner) []*redis.Cmd) ([]*redis.Cmd, error) {
	for try := 0; ; try++ {
		p := s.rdb.Pipeline()
		cmds := queue(p)
		_, err := p.Exec(ctx)
		if err == nil || errors.Is(err, redis.Nil) {
			return cmds, nil
		}
		if try == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if lerr := updateScript.Load(ctx, s.rdb).Err(); lerr != nil {
				return nil, fmt.Errorf("load the update script: %w", lerr)
			}
			continue
		}
		var rerr redis.Error
		if errors.As(err, &rerr) {
			// A command's own error: reported per job by the caller.
			return cmds, nil
		}
		return nil, fmt.Errorf("update %d jobs: %w", len(cmds), err)
	}
}

// Results of updateScript.
const (
	updateWritten = 1
	updateChanged = 0
	updateTaken   = -1
)

// updateScript writes a job document if it is still the one the caller
// read, and applies the index operations that go with the change.
//
// KEYS: the job, then the keys the operations name (by position).
// ARGV: the document read, the new document, then operations:
//
//	"c" k v      fail with {-1, current} unless KEYS[k] is unset or v (checked first)
//	"za" k s m   ZADD KEYS[k] s m
//	"zr" k m     ZREM KEYS[k] m
//	"s" k v      SET KEYS[k] v
//	"d" k        DEL KEYS[k]
//
// It returns {1} when written, {0} when the document changed meanwhile.
var updateScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'c' then
    local cur = redis.call('GET', KEYS[tonumber(ARGV[i+1])])
    if cur and cur ~= ARGV[i+2] then return {-1, cur} end
    i = i + 3
  elseif op == 'za' then i = i + 4
  elseif op == 'd' then i = i + 2
  else i = i + 3 end
end
redis.call('SET', KEYS[1], ARGV[2])
i = 3
while i <= #ARGV do
  local op = ARGV[i]
  local k = KEYS[tonumber(ARGV[i+1])]
  if op == 'za' then
    redis.call('ZADD', k, ARGV[i+2], ARGV[i+3]); i = i + 4
  elseif op == 'zr' then
    redis.call('ZREM', k, ARGV[i+2]); i = i + 3
  elseif op == 's' then
    redis.call('SET', k, ARGV[i+2]); i = i + 3
  elseif op == 'd' then
    redis.call('DEL', k); i = i + 2
  else
    i = i + 3
  end
end
return {1}
`)

// indexOps collects updateScript's keys and operations.
type indexOps struct {
	keys []string
	args []any
	// pos remembers each key's 1-based position in keys.
	pos map[string]int
}

func (o *indexOps) key(k string) int {
	if i, ok := o.pos[k]; ok {
		return i
	}
	if o.pos == nil {
		o.pos = make(map[string]int, 4)
	}
	o.keys = append(o.keys, k)
	o.pos[k] = len(o.keys)
	return len(o.keys)
}

func (o *indexOps) checkFree(k, v string) { o.args = append(o.args, "c", o.key(k), v) }
func (o *indexOps) zadd(k string, score int64, m string) {
	o.args = append(o.args, "za", o.key(k), score, m)
}
func (o *indexOps) zrem(k, m string) { o.args = append(o.args, "zr", o.key(k), m) }
func (o *indexOps) set(k, v string)  { o.args = append(o.args, "s", o.key(k), v) }
func (o *indexOps) del(k string)     { o.args = append(o.args, "d", o.key(k)) }

// shape is what indexChanges needs of a job before its change: a copy
// of it, rather than a second decode of the document, is the cheap way to
// keep the "before" that Update compares with.
type shape struct {
	status jobs.Status
	tasks  []taskShape
}

type taskShape struct {
	status jobs.TaskStatus
	msgSeq uint64
}

func shapeOf(j *jobs.Job) shape {
	sh := shape{status: j.Status, tasks: make([]taskShape, len(j.Tasks))}
	for i := range j.Tasks {
		sh.tasks[i] = taskShape{status: j.Tasks[i].Status, msgSeq: j.Tasks[i].MsgSeq}
	}
	return sh
}

// indexChanges adds the index updates that move a job from before to
// after.
func (s *Store) indexChanges(o *indexOps, before shape, after *jobs.Job) {
	if before.status != after.Status {
		o.zrem(s.statusIndex(before.status), after.ID)
		o.zadd(s.statusIndex(after.Status), after.CreatedAt.UnixMilli(), after.ID)
		if after.Status.Terminal() {
			// The account may be erased again by a new job.
			o.del(s.activeKey(after.AccountID))
		} else if before.status.Terminal() {
			o.set(s.activeKey(after.AccountID), after.ID)
		}
	}
	for i := range after.Tasks {
		t := &after.Tasks[i]
		m := dueMember(after.ID, t.Key())
		switch claimed := t.Status == jobs.TaskDispatched && t.MsgSeq == 0 && t.DispatchedAt != nil; {
		case claimed:
			o.zadd(s.ClaimedKey(), t.DispatchedAt.UnixMilli(), m)
		case i < len(before.tasks) && before.tasks[i].status == jobs.TaskDispatched && before.tasks[i].msgSeq == 0:
			o.zrem(s.ClaimedKey(), m)
		}
		// A held or ended job has nothing due: release puts its
		// scheduled tasks back with their original due times.
		if t.Status == jobs.TaskScheduled && after.Status.Dispatchable() {
			o.zadd(s.DueKey(), t.DueAt.UnixMilli(), m)
		} else {
			o.zrem(s.DueKey(), m)
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
