package jobstore_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/policy"
)

// BenchmarkDueScan measures the scheduler's read of the due index (one
// batch of 256 due stages) with 10k to 1M stages pending behind them: the
// cost per due stage must not grow with what is pending (ZRANGE BYSCORE
// is O(log N + M)). ns/op is one batch; ns/stage divides it by 256.
func BenchmarkDueScan(b *testing.B) {
	for _, pending := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("pending=%d", pending), func(b *testing.B) {
			rdb, prefix := testenv.Redis(b)
			s := jobstore.New(rdb, prefix)
			ctx := context.Background()
			now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
			fillDue(b, rdb, s.DueKey(), 256, now.Add(-time.Hour), "due")
			fillDue(b, rdb, s.DueKey(), pending, now.Add(time.Hour), "later")
			b.ResetTimer()
			for b.Loop() {
				got, err := s.Due(ctx, now, 256)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != 256 {
					b.Fatalf("%d due, want 256", len(got))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/stage")
			// The index itself, per pending stage.
			n, err := rdb.MemoryUsage(ctx, s.DueKey(), 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/float64(pending+256), "index-B/stage")
		})
	}
}

// fillDue adds n members (job ids of the real length with a task) to the
// due index at times from `from` on, in pipelined batches.
func fillDue(b *testing.B, rdb *redis.Client, key string, n int, from time.Time, tag string) {
	b.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 10_000 {
		p := rdb.Pipeline()
		for i := start; i < min(start+10_000, n); i++ {
			m := fmt.Sprintf("0190a3b4-%04s-7000-8000-%012d|billing|delete_retained", tag[:min(4, len(tag))], i)
			p.ZAdd(ctx, key, redis.Z{Score: float64(from.Add(time.Duration(i) * time.Millisecond).UnixMilli()), Member: m})
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPendingStageMemory creates jobs through the store with the
// shipped retention policy (six stages each, all still to run: a
// dashboard deletion in its grace period) and reports the Redis memory
// they take, in all (every key under the store's prefix, by MEMORY USAGE)
// and per pending stage. LETHE_BENCH_JOBS sets the number of jobs
// (default 20 000; 166 667 is one million stages).
func BenchmarkPendingStageMemory(b *testing.B) {
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("LETHE_BENCH_JOBS")); err == nil && v > 0 {
		n = v
	}
	rdb, prefix := testenv.Redis(b)
	s := jobstore.New(rdb, prefix)
	ctx := context.Background()
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	plan, err := app.PlanFromPolicy(policy.Default(), jobs.OriginDashboard, start)
	if err != nil {
		b.Fatal(err)
	}
	stages := 0
	// One pass whatever b.N: the figure is a size, not a rate.
	b.ResetTimer()
	{
		for i := 0; i < n; i++ {
			j, err := jobs.NewPlanned(fmt.Sprintf("0190a3b4-0000-7000-8000-%012d", i), jobs.Request{
				AccountID: fmt.Sprintf("acc-%08d", i), Origin: jobs.OriginDashboard, RequestedBy: "dashboard:acc",
				EventID: fmt.Sprintf("evt-%012d", i),
			}, plan, start)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := s.Create(ctx, j); err != nil {
				b.Fatal(err)
			}
			stages += len(j.Tasks)
		}
	}
	b.StopTimer()
	var total int64
	iter := rdb.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	var keys []string
	flush := func() {
		p := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(keys))
		for i, k := range keys {
			cmds[i] = p.MemoryUsage(ctx, k, 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		for _, c := range cmds {
			total += c.Val()
		}
		keys = keys[:0]
	}
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 5000 {
			flush()
		}
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	flush()
	b.ReportMetric(float64(total)/float64(n), "B/job")
	b.ReportMetric(float64(total)/float64(stages), "B/stage")
	b.ReportMetric(float64(total)/float64(stages)*1e6/(1<<30), "GiB/1M-stages")
}
