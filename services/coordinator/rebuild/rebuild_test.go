package rebuild_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
	"github.com/lethe-privacy/lethe/services/coordinator/rebuild"
)

type env struct {
	js     jetstream.JetStream
	rdb    *redis.Client
	prefix string
	store  *jobstore.Store
	svc    *app.Service
	disp   *dispatch.Dispatcher
}

// clock is a fake clock that moves a millisecond per reading, so that
// every transition has its own time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func setup(t testing.TB) *env {
	t.Helper()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	cfg := app.Config{Categories: []string{"backups", "contacts", "logs"}}
	s := topology.DefaultSettings()
	s.Categories = cfg.Categories
	if err := topology.Ensure(context.Background(), js, s); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	store := jobstore.New(rdb, prefix)
	rec := lifecycle.NewRecorder(js)
	c := &clock{now: time.Now().UTC()}
	disp := dispatch.New(store, js, rec, zaptest.NewLogger(t), nil, dispatch.Options{Now: c.Now})
	svc := app.NewService(store, rec, cfg.Plan(), nil, app.WithClock(c.Now))
	return &env{js: js, rdb: rdb, prefix: prefix, store: store, svc: svc, disp: disp}
}

func (e *env) dispatchDue(t testing.TB) {
	t.Helper()
	for {
		n, err := e.disp.DispatchDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func (e *env) report(t testing.TB, j *jobs.Job, cat string, outcome erasurev1.TaskOutcome, items int64, attempt uint32) {
	t.Helper()
	job, err := e.store.Get(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	task, err := job.Task(jobs.TaskKey{Category: cat, Stage: "erase"})
	if err != nil {
		t.Fatal(err)
	}
	rep := &erasurev1.TaskReport{JobId: j.ID, AccountId: j.AccountID, Category: cat, Stage: "erase", Generation: task.Generation,
		Outcome: outcome, ItemsPurged: items, Attempt: attempt, WorkerId: "w-1"}
	if outcome != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED {
		rep.ErrorCode, rep.ErrorMessage = "permanent", "permission denied for table "+cat
		if outcome == erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING {
			rep.ErrorCode, rep.ErrorMessage = "unavailable", cat+" store unreachable"
		}
	}
	if _, err := e.svc.ApplyReport(context.Background(), rep); err != nil {
		t.Fatal(err)
	}
}

func (e *env) replay(t testing.TB, j *jobs.Job, sel jobs.ReplaySelector) {
	t.Helper()
	if _, _, err := e.svc.Replay(context.Background(), j.ID, sel, "sre:kim", "grants restored"); err != nil {
		t.Fatal(err)
	}
}

const (
	ok    = erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED
	fail  = erasurev1.TaskOutcome_TASK_OUTCOME_FAILED
	retry = erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING
)

// drive creates n jobs and moves each through one of eight paths, from
// "just dispatched" to "failed, replayed, completed".
func (e *env) drive(t testing.TB, n int) []*jobs.Job {
	t.Helper()
	ctx := context.Background()
	var all []*jobs.Job
	for i := range n {
		req := jobs.Request{AccountID: fmt.Sprintf("acc-%04d", i), Origin: jobs.OriginAPI, RequestedBy: "privacy:ops", Reason: "DSR " + fmt.Sprint(i)}
		if i%3 == 0 {
			req.Origin, req.RequestedBy, req.Reason, req.EventID = jobs.OriginDashboard, "dashboard", "account deleted in the dashboard", fmt.Sprintf("evt-%04d", i)
		}
		j, created, err := e.svc.RequestErasure(ctx, req)
		if err != nil || !created {
			t.Fatalf("request %d: %v %v", i, created, err)
		}
		all = append(all, j)
	}
	e.dispatchDue(t) // every job's backups task
	for i, j := range all {
		switch i % 8 {
		case 0: // backups dispatched, the rest waiting
		case 1:
			e.report(t, j, "backups", ok, 1, 1)
		case 2:
			e.report(t, j, "backups", ok, 1, 1)
			e.dispatchDue(t)
			e.report(t, j, "contacts", ok, int64(100+i), 1)
			e.report(t, j, "logs", ok, int64(i), 1)
		case 3:
			e.report(t, j, "backups", fail, 0, 8)
		case 4, 5:
			e.report(t, j, "backups", ok, 1, 1)
			e.dispatchDue(t)
			e.report(t, j, "contacts", retry, 0, 1)
			e.report(t, j, "contacts", retry, 0, 2)
			e.report(t, j, "contacts", ok, 40, 3)
			e.report(t, j, "logs", fail, 2, 8)
			if i%8 == 5 {
				e.replay(t, j, jobs.ReplaySelector{})
				e.dispatchDue(t)
				e.report(t, j, "logs", ok, 5, 1)
			}
		case 6:
			e.report(t, j, "backups", fail, 0, 8)
			e.replay(t, j, jobs.ReplaySelector{})
			e.dispatchDue(t)
		case 7:
			e.report(t, j, "backups", ok, 1, 1)
			e.dispatchDue(t)
			e.report(t, j, "contacts", ok, 7, 1)
			e.report(t, j, "logs", ok, 9, 1)
			e.replay(t, j, jobs.ReplaySelector{Category: "contacts"})
			e.dispatchDue(t)
			e.report(t, j, "contacts", ok, 0, 1)
		}
	}
	return all
}

// dump lists every key under the prefix with its type, value and whether
// it expires (to the minute).
func (e *env) dump(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	keys := e.keys(t)
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		typ := e.rdb.Type(ctx, k).Val()
		fmt.Fprintf(&b, "%s (%s)", strings.TrimPrefix(k, e.prefix), typ)
		if ttl := e.rdb.PTTL(ctx, k).Val(); ttl > 0 {
			fmt.Fprintf(&b, " ttl≈%s", ttl.Round(time.Minute))
		}
		switch typ {
		case "string":
			v := e.rdb.Get(ctx, k).Val()
			if strings.HasPrefix(k, e.prefix+"job:") {
				v = withoutMsgSeq(t, v)
			}
			fmt.Fprintf(&b, " = %s", v)
		case "zset":
			for _, z := range e.rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
				fmt.Fprintf(&b, " %v@%.0f", z.Member, z.Score)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// withoutMsgSeq clears what the events do not carry: where a task's
// message sits in the tasks stream (reconciliation treats 0 as unknown).
func withoutMsgSeq(t testing.TB, doc string) string {
	t.Helper()
	var j jobs.Job
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		t.Fatal(err)
	}
	for i := range j.Tasks {
		j.Tasks[i].MsgSeq = 0
	}
	out, err := json.Marshal(&j)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func (e *env) keys(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := e.rdb.Scan(ctx, 0, e.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// flush deletes every key under the test's prefix: Redis lost its data.
func (e *env) flush(t testing.TB) {
	t.Helper()
	keys := e.keys(t)
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := e.rdb.Del(context.Background(), keys[:n]...).Err(); err != nil {
			t.Fatal(err)
		}
		keys = keys[n:]
	}
}

// republish appends the job's events again under new message ids, as the
// coordinator re-records them after the stream's duplicate window.
func (e *env) republish(t testing.TB, jobID string) int {
	t.Helper()
	ctx := context.Background()
	cons, err := e.js.OrderedConsumer(ctx, erasurev1.LifecycleStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{erasurev1.LifecycleSubject(jobID)}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			msgs = append(msgs, m)
			n++
		}
		if n == 0 {
			break
		}
	}
	for i, m := range msgs {
		out := nats.NewMsg(m.Subject())
		out.Data = m.Data()
		out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("late-%s-%d", jobID, i))
		if _, err := e.js.PublishMsg(ctx, out); err != nil {
			t.Fatal(err)
		}
	}
	return len(msgs)
}

func TestRebuildRestoresEveryJobAfterRedisLostItsData(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	all := e.drive(t, 64)
	dups := e.republish(t, all[5].ID) + e.republish(t, all[6].ID)

	before := e.dump(t)
	var jobsBefore []*jobs.Job
	for _, j := range all {
		got, err := e.store.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got.Tasks {
			got.Tasks[i].MsgSeq = 0
		}
		jobsBefore = append(jobsBefore, got)
	}

	e.flush(t)
	if n, _ := e.store.Count(ctx); n != 0 {
		t.Fatalf("%d jobs left after the flush", n)
	}
	var lastDone, lastTotal uint64
	sum, err := rebuild.Rebuild(ctx, e.js, e.store, rebuild.Options{ProgressEvery: 50}, func(done, total uint64) { lastDone, lastTotal = done, total })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rebuild: %d events (%d duplicates) into %d jobs in %s (read %s): %+v", sum.Events, sum.Duplicates, sum.Jobs, sum.Duration, sum.ReadDuration, sum.ByStatus)
	if sum.Jobs != len(all) || sum.Written != len(all) || sum.Unapplied != 0 || sum.Mismatches != 0 || sum.Undecodable != 0 || len(sum.Problems) != 0 {
		t.Errorf("summary = %+v, want %d jobs and nothing unapplied", sum, len(all))
	}
	if sum.Duplicates != uint64(dups) {
		t.Errorf("%d duplicates, want the %d republished events", sum.Duplicates, dups)
	}
	if lastDone != sum.Events || lastTotal != sum.Events {
		t.Errorf("last progress %d/%d, want %d/%d", lastDone, lastTotal, sum.Events, sum.Events)
	}

	// Every key as it was: documents, indexes, guards, event keys, due
	// entries. (Deep-equal: the events carry everything a job holds.)
	if after := e.dump(t); after != before {
		t.Errorf("Redis after the rebuild differs.\nafter:\n%s\nbefore:\n%s", after, before)
	}
	for _, want := range jobsBefore {
		got, err := e.store.Get(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("job %s:\n%+v\nwant\n%+v", want.ID, got, want)
		}
	}

	// The guards work: a running job's account gets its job back, an
	// ended job's account a new one, a dashboard event its first job.
	running, ended := jobsBefore[0], jobsBefore[2]
	j, created, err := e.svc.RequestErasure(ctx, jobs.Request{AccountID: running.AccountID, Origin: jobs.OriginAPI, RequestedBy: "privacy:ops", Reason: "again"})
	if err != nil || created || j.ID != running.ID {
		t.Errorf("request for an account with a rebuilt running job: %v created=%v err=%v, want job %s", j.ID, created, err, running.ID)
	}
	j, created, err = e.svc.RequestErasure(ctx, jobs.Request{AccountID: "acc-other", Origin: jobs.OriginDashboard, RequestedBy: "dashboard", EventID: jobsBefore[3].EventID})
	if err != nil || created || j.ID != jobsBefore[3].ID {
		t.Errorf("the dashboard event of a rebuilt job again: %v created=%v err=%v, want job %s", j.ID, created, err, jobsBefore[3].ID)
	}
	j, created, err = e.svc.RequestErasure(ctx, jobs.Request{AccountID: ended.AccountID, Origin: jobs.OriginAPI, RequestedBy: "privacy:ops", Reason: "again"})
	if err != nil || !created || j.ID == ended.ID {
		t.Errorf("request for an account whose job ended: %v created=%v err=%v, want a new job", j.ID, created, err)
	}

	// The dispatcher carries on from the rebuilt due index.
	e.dispatchDue(t)
	if got, _ := e.store.Get(ctx, jobsBefore[1].ID); got.Tasks[1].Status != jobs.TaskDispatched {
		t.Errorf("released task after the rebuild: %s, want dispatched", got.Tasks[1].Status)
	}

	// A second rebuild over the full Redis changes nothing.
	before = e.dump(t)
	sum, err = rebuild.Rebuild(ctx, e.js, e.store, rebuild.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after := e.dump(t); after != before || sum.Unapplied != 0 || sum.Mismatches != 0 {
		t.Errorf("rebuild over a full Redis changed it (summary %+v):\n%s\nwant\n%s", sum, after, before)
	}
}

func TestRebuildOfAnEmptyStream(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sum, err := rebuild.Rebuild(context.Background(), e.js, e.store, rebuild.Options{}, nil)
	if err != nil || sum.Events != 0 || sum.Jobs != 0 {
		t.Errorf("rebuild of an empty stream = %+v, %v", sum, err)
	}
}

// BenchmarkRebuild measures a rebuild of the trail of 2000 jobs (about 8
// events each) into an empty Redis: go test -run X -bench Rebuild
// -benchtime 3x.
func BenchmarkRebuild(b *testing.B) {
	e := setup(b)
	e.drive(b, 2000)
	b.ResetTimer()
	var sum rebuild.Summary
	for range b.N {
		b.StopTimer()
		e.flush(b)
		b.StartTimer()
		var err error
		sum, err = rebuild.Rebuild(context.Background(), e.js, e.store, rebuild.Options{}, nil)
		if err != nil || sum.Unapplied != 0 {
			b.Fatal(sum, err)
		}
	}
	b.ReportMetric(float64(sum.Events), "events")
	b.ReportMetric(float64(sum.Events)/sum.ReadDuration.Seconds(), "events/s-read")
	b.ReportMetric(float64(sum.Events)/sum.Duration.Seconds(), "events/s")
	b.ReportMetric(float64(sum.Jobs)/(sum.Duration-sum.ReadDuration).Seconds(), "jobs/s-write")
}
