package jobstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// statuses lists every job status, for Put to take a job out of the status
// indexes it no longer belongs to.
var statuses = jobs.Statuses

// putScript writes a job and every key derived from it, replacing what
// was there: the state Create and then Update would have left. With an
// expected digest other than "*" it first checks that the stored document
// is still the one the caller read ("" for none) and returns 0 without
// writing when it changed.
//
// KEYS: job, idx:all, idx:account, active, event (or a dummy), due, then
// one status index per entry of statuses
// ARGV: job id, job json, created ms, 1-based position of the job's own
// status index among the status keys, terminal (0/1), has event (0/1),
// event expiry (unix ms), expected digest (sha1 hex, "" or "*"), then
// triples of ("a" add | "r" remove, due ms, due member)
var putScript = redis.NewScript(`
if ARGV[8] ~= '*' then
  local cur = redis.call('GET', KEYS[1])
  if ARGV[8] == '' then
    if cur then return 0 end
  elseif (not cur) or redis.sha1hex(cur) ~= ARGV[8] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local own = tonumber(ARGV[4])
for i = 7, #KEYS do
  if i - 6 == own then
    redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1])
  else
    redis.call('ZREM', KEYS[i], ARGV[1])
  end
end
if ARGV[5] == '1' then
  if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
else
  redis.call('SET', KEYS[4], ARGV[1])
end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[5], ARGV[1], 'PXAT', ARGV[7])
end
for i = 9, #ARGV, 3 do
  if ARGV[i] == 'a' then
    redis.call('ZADD', KEYS[6], ARGV[i+1], ARGV[i+2])
  else
    redis.call('ZREM', KEYS[6], ARGV[i+2])
  end
end
return 1
`)

// Put writes j as Create followed by Updates would have left it,
// replacing whatever Redis held of the job: the document; its entries in
// idx:all, idx:account and the one status index it belongs to (and none
// other); the account's active guard while the job is not terminal
// (deleted when it is terminal and still names this job); the dashboard
// event's key until CreatedAt plus the event TTL (not brought back once
// that has passed); and a due entry for every scheduled task (removed for
// the others). It is atomic per job and idempotent, so it converges over a
// partly restored Redis.
func (s *Store) Put(ctx context.Context, j *jobs.Job) error {
	return s.PutAll(ctx, []*jobs.Job{j})
}

// PutAll is Put for many jobs, pipelined in batches: each job is still
// written atomically, but a batch costs one round trip. Jobs are written in
// order, so when two jobs of an account are not terminal (which the
// domain does not allow) the later one holds the guard. On error some jobs
// may have been written; calling PutAll again converges.
func (s *Store) PutAll(ctx context.Context, js []*jobs.Job) error {
	if err := putScript.Load(ctx, s.rdb).Err(); err != nil {
		return fmt.Errorf("load put script: %w", err)
	}
	now := time.Now()
	for start := 0; start < len(js); start += putBatch {
		part := js[start:min(start+putBatch, len(js))]
		calls := make([]putCall, 0, len(part))
		for _, j := range part {
			c, err := s.putCall(j, "*", now)
			if err != nil {
				return err
			}
			calls = append(calls, c)
		}
		if _, err := s.runPuts(ctx, calls); err != nil {
			return err
		}
	}
	return nil
}

// PutResult counts what PutIfNotNewer did.
type PutResult struct {
	// Written jobs were stored as given.
	Written int
	// KeptNewer jobs were left as Redis held them: their stored version
	// was updated later than the given one.
	KeptNewer int
}

// PutIfNotNewer is PutAll for a store that may be serving while it runs
// (a rebuild): a job whose stored version has a later UpdatedAt than the
// given one was changed by the running coordinators after the given
// version was computed, and is left alone instead of being rolled back.
// Each job is read, compared and written with a compare-and-set, so a
// concurrent Update either lands before the write (and is then kept, as
// newer) or retries on top of it.
func (s *Store) PutIfNotNewer(ctx context.Context, js []*jobs.Job) (PutResult, error) {
	var res PutResult
	if err := putScript.Load(ctx, s.rdb).Err(); err != nil {
		return res, fmt.Errorf("load put script: %w", err)
	}
	now := time.Now()
	for start := 0; start < len(js); start += putBatch {
		todo := js[start:min(start+putBatch, len(js))]
		for attempt := 0; len(todo) > 0; attempt++ {
			if attempt == 50 {
				return res, fmt.Errorf("put job %s: %w", todo[0].ID, ErrConflict)
			}
			keys := make([]string, len(todo))
			for i, j := range todo {
				keys[i] = s.jobKey(j.ID)
			}
			stored, err := s.rdb.MGet(ctx, keys...).Result()
			if err != nil {
				return res, fmt.Errorf("read stored jobs: %w", err)
			}
			calls := make([]putCall, 0, len(todo))
			var cjobs []*jobs.Job
			for i, j := range todo {
				expect := ""
				if str, ok := stored[i].(string); ok {
					cur, err := decode(j.ID, []byte(str))
					if err != nil {
						return res, err
					}
					if cur.UpdatedAt.After(j.UpdatedAt) {
						res.KeptNewer++
						continue
					}
					sum := sha1.Sum([]byte(str))
					expect = hex.EncodeToString(sum[:])
				}
				c, err := s.putCall(j, expect, now)
				if err != nil {
					return res, err
				}
				calls = append(calls, c)
				cjobs = append(cjobs, j)
			}
			written, err := s.runPuts(ctx, calls)
			if err != nil {
				return res, err
			}
			var again []*jobs.Job
			for i, ok := range written {
				if ok {
					res.Written++
				} else {
					again = append(again, cjobs[i])
				}
			}
			todo = again
		}
	}
	return res, nil
}

// putBatch is how many jobs one pipelined round trip writes.
const putBatch = 256

type putCall struct {
	id   string
	keys []string
	args []any
}

// putCall prepares the script call that writes j; expect is the digest
// of the stored document to replace, "" for none, "*" for any.
func (s *Store) putCall(j *jobs.Job, expect string, now time.Time) (putCall, error) {
	data, err := json.Marshal(j)
	if err != nil {
		return putCall{}, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	own := 0
	for i, st := range statuses {
		if st == j.Status {
			own = i + 1
		}
	}
	if own == 0 {
		return putCall{}, fmt.Errorf("put job %s: unknown status %q", j.ID, j.Status)
	}
	eventKey, hasEvent, expireAt := s.prefix+"event:-", "0", int64(0)
	if j.EventID != "" {
		// Create remembered the event for eventTTL from the job's
		// creation; an event whose memory has already expired is not
		// brought back.
		if exp := j.CreatedAt.Add(s.eventTTL); exp.After(now) {
			eventKey, hasEvent, expireAt = s.eventKey(j.EventID), "1", exp.UnixMilli()
		}
	}
	terminal := "0"
	if j.Status.Terminal() {
		terminal = "1"
	}
	keys := []string{s.jobKey(j.ID), s.allIndex(), s.accountIndex(j.AccountID), s.activeKey(j.AccountID), eventKey, s.DueKey()}
	for _, st := range statuses {
		keys = append(keys, s.statusIndex(st))
	}
	args := []any{j.ID, data, j.CreatedAt.UnixMilli(), own, terminal, hasEvent, expireAt, expect}
	for i := range j.Tasks {
		t := &j.Tasks[i]
		op, score := "r", int64(0)
		if t.Status == jobs.TaskScheduled && j.Status.Dispatchable() {
			op, score = "a", t.DueAt.UnixMilli()
		}
		args = append(args, op, score, dueMember(j.ID, t.Key()))
	}
	return putCall{id: j.ID, keys: keys, args: args}, nil
}

// runPuts runs the calls in one pipeline and says which wrote. When the
// script cache was flushed in between (SCRIPT FLUSH, a restart) it sends
// the script's text once.
func (s *Store) runPuts(ctx context.Context, calls []putCall) ([]bool, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	run := func(eval bool) ([]redis.Cmder, error) {
		return s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range calls {
				if eval {
					putScript.Eval(ctx, p, c.keys, c.args...)
				} else {
					putScript.EvalSha(ctx, p, c.keys, c.args...)
				}
			}
			return nil
		})
	}
	cmds, err := run(false)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		cmds, err = run(true)
	}
	if err != nil {
		for i, cmd := range cmds {
			if cerr := cmd.Err(); cerr != nil {
				return nil, fmt.Errorf("put job %s: %w", calls[i].id, cerr)
			}
		}
		return nil, fmt.Errorf("put jobs: %w", err)
	}
	out := make([]bool, len(cmds))
	for i, cmd := range cmds {
		n, _ := cmd.(*redis.Cmd).Int64()
		out[i] = n == 1
	}
	return out, nil
}

// Count returns how many jobs the store lists (the size of idx:all). Zero
// after Redis lost its data, which is what start-up checks before a
// rebuild.
func (s *Store) Count(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.allIndex()).Result()
	if err != nil {
		return 0, fmt.Errorf("count jobs: %w", err)
	}
	return n, nil
}
