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
// fn returns false or limit jobs were passed to it. It reads a snapshot of
// the first limit ids of idx:status:running and loads them in batches: a
// job that ended or vanished in between is skipped, and so is a document
// that does not decode (Get reports it for that job). limit must be
// positive. It changes nothing and returns only Redis errors.
func (s *Store) ScanRunning(ctx context.Context, fn func(*jobs.Job) bool, limit int) error {
	if limit <= 0 {
		return fmt.Errorf("scan running jobs: limit %d must be positive", limit)
	}
	ids, err := s.rdb.ZRange(ctx, s.statusIndex(jobs.StatusRunning), 0, int64(limit)-1).Result()
	if err != nil {
		return fmt.Errorf("scan running jobs: %w", err)
	}
	for start := 0; start < len(ids); start += scanBatch {
		part := ids[start:min(start+scanBatch, len(ids))]
		keys := make([]string, len(part))
		for i, id := range part {
			keys[i] = s.jobKey(id)
		}
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return fmt.Errorf("load running jobs: %w", err)
		}
		for i, v := range vals {
			str, ok := v.(string)
			if !ok {
				continue
			}
			j, err := decode(part[i], []byte(str))
			if err != nil || j.Status != jobs.StatusRunning {
				continue
			}
			if !fn(j) {
				return nil
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
