package jobstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// This file holds read-only views for monitoring: counts and bounded scans
// that change nothing, so that a monitor may run on every replica at once.

// scanBatch is how many ids one MGET of a scan loads.
const scanBatch = 256

// CountByStatus returns how many jobs each status index holds (ZCARD of
// idx:status:<status>), in one round trip. Every known status is present
// in the result, with 0 when none has it.
func (s *Store) CountByStatus(ctx context.Context) (map[jobs.Status]int64, error) {
	cmds := make([]*redis.IntCmd, len(statuses))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, st := range statuses {
			cmds[i] = p.ZCard(ctx, s.statusIndex(st))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count jobs by status: %w", err)
	}
	out := make(map[jobs.Status]int64, len(statuses))
	for i, st := range statuses {
		out[st] = cmds[i].Val()
	}
	return out, nil
}

// ScanRunning calls fn with running jobs, oldest (by creation) first, until
// fn returns false or limit jobs were passed to it (see ScanStatuses).
func (s *Store) ScanRunning(ctx context.Context, fn func(*jobs.Job) bool, limit int) error {
	return s.ScanStatuses(ctx, []jobs.Status{jobs.StatusRunning}, fn, limit)
}

// ScanStatuses calls fn with the jobs in the given statuses, status by
// status and oldest (by creation) first within each, until fn returns
// false or limit jobs were passed to it. It reads a snapshot of the first
// limit ids of each idx:status:<status> and loads them in batches: a job
// whose status changed or that vanished in between is skipped, and so is a
// document that does not decode (Get reports it for that job). limit must
// be positive. It changes nothing and returns only Redis errors.
func (s *Store) ScanStatuses(ctx context.Context, sts []jobs.Status, fn func(*jobs.Job) bool, limit int) error {
	if limit <= 0 {
		return fmt.Errorf("scan jobs: limit %d must be positive", limit)
	}
	passed := 0
	for _, st := range sts {
		if passed >= limit {
			return nil
		}
		ids, err := s.rdb.ZRange(ctx, s.statusIndex(st), 0, int64(limit-passed)-1).Result()
		if err != nil {
			return fmt.Errorf("scan %s jobs: %w", st, err)
		}
		for start := 0; start < len(ids); start += scanBatch {
			part := ids[start:min(start+scanBatch, len(ids))]
			keys := make([]string, len(part))
			for i, id := range part {
				keys[i] = s.jobKey(id)
			}
			vals, err := s.rdb.MGet(ctx, keys...).Result()
			if err != nil {
				return fmt.Errorf("load %s jobs: %w", st, err)
			}
			for i, v := range vals {
				str, ok := v.(string)
				if !ok {
					continue
				}
				j, err := decode(part[i], []byte(str))
				if err != nil || j.Status != st {
					continue
				}
				passed++
				if !fn(j) {
					return nil
				}
			}
		}
	}
	return nil
}

// ScanDue calls fn with entries of the due index whose due time is at or
// before now, earliest first, until fn returns false or limit entries were
// passed to it. Unlike Due it removes nothing: malformed entries are
// skipped. limit must be positive.
func (s *Store) ScanDue(ctx context.Context, now time.Time, fn func(DueEntry) bool, limit int) error {
	if limit <= 0 {
		return fmt.Errorf("scan due tasks: limit %d must be positive", limit)
	}
	stop := strconv.FormatInt(now.UnixMilli(), 10)
	seen := 0
	for offset := int64(0); seen < limit; {
		n := min(limit-seen, 1000)
		zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: s.DueKey(), Start: "-inf", Stop: stop, ByScore: true, Offset: offset, Count: int64(n),
		}).Result()
		if err != nil {
			return fmt.Errorf("scan due tasks: %w", err)
		}
		for _, z := range zs {
			seen++
			m, _ := z.Member.(string)
			id, k, err := ParseDueMember(m)
			if err != nil {
				continue
			}
			if !fn(DueEntry{JobID: id, Task: k, DueAt: time.UnixMilli(int64(z.Score)).UTC()}) {
				return nil
			}
		}
		if len(zs) < n {
			return nil
		}
		offset += int64(len(zs))
	}
	return nil
}
