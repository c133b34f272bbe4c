package monitor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/monitor"
)

var allCategories = []string{"contacts", "logs", "billing", "backups"}

// fixture is a broker and a store with a known backlog:
//
//   - tasks: contacts has 3 messages, one delivered twice and not acked;
//     logs has 1 undelivered; reports has 2 undelivered; an ephemeral
//     consumer on the reports stream must not be reported;
//   - dead letters: contacts 2, billing 1;
//   - jobs: A (contacts scheduled, due 2 h ago; logs dispatched 30 min ago),
//     B (created 40 days ago, so overdue; logs dispatched 45 min ago),
//     C (contacts due in an hour), D (failed).
type fixture struct {
	nats  *testenv.NATSServer
	js    jetstream.JetStream
	store *jobstore.Store
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	settings := topology.DefaultSettings()
	settings.Categories = []string{"contacts", "logs"}
	settings.TaskBackOff = []time.Duration{} // a nak redelivers at once
	if err := topology.Ensure(ctx, js, settings); err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, n int) {
		t.Helper()
		for range n {
			if _, err := js.Publish(ctx, subject, []byte("x")); err != nil {
				t.Fatalf("publish on %s: %v", subject, err)
			}
		}
	}
	// Deliver one contacts task, nak it, and take its redelivery (the only
	// message, so the second fetch cannot get another): it awaits its ack
	// and was redelivered. Two more are published after it.
	publish(erasurev1.TaskSubject("contacts"), 1)
	cons, err := js.Consumer(ctx, erasurev1.TasksStream, erasurev1.WorkerConsumer("contacts"))
	if err != nil {
		t.Fatal(err)
	}
	fetchOne := func() jetstream.Msg {
		t.Helper()
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			return m
		}
		t.Fatal("no task delivered")
		return nil
	}
	if err := fetchOne().Nak(); err != nil {
		t.Fatal(err)
	}
	m := fetchOne()
	if meta, _ := m.Metadata(); meta == nil || meta.NumDelivered != 2 {
		t.Fatalf("second fetch did not redeliver the nak'ed task: %+v", meta)
	}
	publish(erasurev1.TaskSubject("contacts"), 2)
	publish(erasurev1.TaskSubject("logs"), 1)
	publish(erasurev1.ReportSubject("contacts"), 2)
	publish(erasurev1.DeadLetterSubject("contacts"), 2)
	publish(erasurev1.DeadLetterSubject("billing"), 1)
	// An ephemeral reader, as erasectl or the dead-letter listing make.
	if _, err := js.CreateConsumer(ctx, erasurev1.ReportsStream, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}

	rdb, prefix := testenv.Redis(t)
	f := &fixture{nats: ns, js: js, store: jobstore.New(rdb, prefix), now: time.Now().UTC().Truncate(time.Second)}
	now := f.now
	a := f.create(t, "job-a", "acc-a", now.Add(-2*time.Hour), jobs.TaskSpec{Category: "contacts", Stage: "erase"}, jobs.TaskSpec{Category: "logs", Stage: "erase"})
	f.dispatch(t, a, "logs", now.Add(-30*time.Minute))
	b := f.create(t, "job-b", "acc-b", now.Add(-40*24*time.Hour), jobs.TaskSpec{Category: "logs", Stage: "erase"})
	f.dispatch(t, b, "logs", now.Add(-45*time.Minute))
	f.create(t, "job-c", "acc-c", now, jobs.TaskSpec{Category: "contacts", Stage: "erase", After: time.Hour})
	d := f.create(t, "job-d", "acc-d", now.Add(-time.Hour), jobs.TaskSpec{Category: "billing", Stage: "erase"})
	f.dispatch(t, d, "billing", now.Add(-50*time.Minute))
	f.update(t, d, func(j *jobs.Job) error {
		_, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "billing", Stage: "erase"}, Generation: 1, ErrorCode: "refused", Error: "refused", Attempt: 1, At: now.Add(-40 * time.Minute)})
		return err
	})
	if got, _ := f.store.Get(ctx, d); got.Status != jobs.StatusFailed {
		t.Fatalf("job-d is %s, want failed", got.Status)
	}
	return f
}

func (f *fixture) create(t *testing.T, id, acct string, at time.Time, plan ...jobs.TaskSpec) string {
	t.Helper()
	for i := range plan {
		plan[i].Action = "delete"
	}
	j, err := jobs.New(id, jobs.Request{AccountID: acct, Origin: jobs.OriginAPI, RequestedBy: "sre:test", Reason: "monitor test"}, plan, at)
	if err != nil {
		t.Fatal(err)
	}
	if _, created, err := f.store.Create(context.Background(), j); err != nil || !created {
		t.Fatalf("create %s: created %v, %v", id, created, err)
	}
	return id
}

func (f *fixture) update(t *testing.T, id string, fn func(*jobs.Job) error) {
	t.Helper()
	if _, err := f.store.Update(context.Background(), id, fn); err != nil {
		t.Fatalf("update %s: %v", id, err)
	}
}

func (f *fixture) dispatch(t *testing.T, id, category string, at time.Time) {
	t.Helper()
	f.update(t, id, func(j *jobs.Job) error {
		_, err := j.MarkDispatched(jobs.TaskKey{Category: category, Stage: "erase"}, 1, at)
		return err
	})
}

func (f *fixture) monitor(reg prometheus.Registerer, opts monitor.Options) *monitor.Monitor {
	opts.Categories = allCategories
	opts.Now = func() time.Time { return f.now }
	return monitor.New(f.js, f.store, zap.NewNop(), reg, opts)
}

const wantConsumers = `
# HELP lethe_consumer_ack_pending_messages Messages delivered to the consumer and not yet acknowledged, by stream and durable consumer.
# TYPE lethe_consumer_ack_pending_messages gauge
lethe_consumer_ack_pending_messages{consumer="coordinator-advisories",stream="ERASURE_V1_ADVISORIES"} 0
lethe_consumer_ack_pending_messages{consumer="coordinator-ingress",stream="ACCOUNTS_V1"} 0
lethe_consumer_ack_pending_messages{consumer="coordinator-reports",stream="ERASURE_V1_REPORTS"} 0
lethe_consumer_ack_pending_messages{consumer="worker-contacts",stream="ERASURE_V1_TASKS"} 1
lethe_consumer_ack_pending_messages{consumer="worker-logs",stream="ERASURE_V1_TASKS"} 0
# HELP lethe_consumer_pending_messages Messages of the consumer's stream not yet delivered to it (its lag), by stream and durable consumer.
# TYPE lethe_consumer_pending_messages gauge
lethe_consumer_pending_messages{consumer="coordinator-advisories",stream="ERASURE_V1_ADVISORIES"} 0
lethe_consumer_pending_messages{consumer="coordinator-ingress",stream="ACCOUNTS_V1"} 0
lethe_consumer_pending_messages{consumer="coordinator-reports",stream="ERASURE_V1_REPORTS"} 2
lethe_consumer_pending_messages{consumer="worker-contacts",stream="ERASURE_V1_TASKS"} 2
lethe_consumer_pending_messages{consumer="worker-logs",stream="ERASURE_V1_TASKS"} 1
# HELP lethe_consumer_redelivered_messages Messages awaiting acknowledgement that were delivered more than once, by stream and durable consumer.
# TYPE lethe_consumer_redelivered_messages gauge
lethe_consumer_redelivered_messages{consumer="coordinator-advisories",stream="ERASURE_V1_ADVISORIES"} 0
lethe_consumer_redelivered_messages{consumer="coordinator-ingress",stream="ACCOUNTS_V1"} 0
lethe_consumer_redelivered_messages{consumer="coordinator-reports",stream="ERASURE_V1_REPORTS"} 0
lethe_consumer_redelivered_messages{consumer="worker-contacts",stream="ERASURE_V1_TASKS"} 1
lethe_consumer_redelivered_messages{consumer="worker-logs",stream="ERASURE_V1_TASKS"} 0
`

const wantDeadLetters = `
# HELP lethe_dead_letters Dead letters kept in ERASURE_V1_DEAD_LETTERS (tasks that failed for good, not yet replayed), by category.
# TYPE lethe_dead_letters gauge
lethe_dead_letters{category="backups"} 0
lethe_dead_letters{category="billing"} 1
lethe_dead_letters{category="contacts"} 2
lethe_dead_letters{category="logs"} 0
`

const wantJobs = `
# HELP lethe_jobs Jobs in the store, by status.
# TYPE lethe_jobs gauge
lethe_jobs{status="cancelled"} 0
lethe_jobs{status="completed"} 0
lethe_jobs{status="erased"} 0
lethe_jobs{status="failed"} 1
lethe_jobs{status="held"} 0
lethe_jobs{status="pending"} 0
lethe_jobs{status="running"} 3
# HELP lethe_jobs_at_risk Jobs that still owe an erasure (pending, running or held) whose legal deadline falls within the at-risk window (Options.AtRiskWindow, default 72h) and has not passed yet.
# TYPE lethe_jobs_at_risk gauge
lethe_jobs_at_risk 0
# HELP lethe_jobs_overdue Jobs that still owe an erasure (pending, running or held) past their legal deadline.
# TYPE lethe_jobs_overdue gauge
lethe_jobs_overdue 1
`

// contacts: job A's scheduled task, due 2 h ago. logs: job B's dispatched
// task, 45 min (older than job A's 30 min). billing: job D failed, nothing
// waits. Job C's contacts task is not due yet.
const wantOldest = `
# HELP lethe_oldest_undone_task_age_seconds Age of the oldest task not done: since its due time for a scheduled task whose time has come, since its dispatch for a dispatched one; 0 when none waits.
# TYPE lethe_oldest_undone_task_age_seconds gauge
lethe_oldest_undone_task_age_seconds{category="backups"} 0
lethe_oldest_undone_task_age_seconds{category="billing"} 0
lethe_oldest_undone_task_age_seconds{category="contacts"} 7200
lethe_oldest_undone_task_age_seconds{category="logs"} 2700
`

func TestSampleExposesWhatWaits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := prometheus.NewPedanticRegistry()
	m := f.monitor(reg, monitor.Options{})
	if err := m.Sample(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		want  string
		names []string
	}{
		{"consumers", wantConsumers, []string{"lethe_consumer_pending_messages", "lethe_consumer_ack_pending_messages", "lethe_consumer_redelivered_messages"}},
		{"dead letters", wantDeadLetters, []string{"lethe_dead_letters"}},
		{"jobs", wantJobs, []string{"lethe_jobs", "lethe_jobs_at_risk", "lethe_jobs_overdue"}},
		{"oldest undone task", wantOldest, []string{"lethe_oldest_undone_task_age_seconds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := testutil.GatherAndCompare(reg, strings.NewReader(tt.want), tt.names...); err != nil {
				t.Error(err)
			}
		})
	}
	if got, want := gauge(t, reg, "lethe_monitor_last_success_timestamp_seconds"), float64(f.now.Unix()); got != want {
		t.Errorf("last success = %v, want %v", got, want)
	}
}

// A drained category shows 0 instead of vanishing, so its alert resolves.
func TestDrainedDeadLettersShowZero(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := monitor.New(f.js, f.store, zap.NewNop(), reg, monitor.Options{Now: func() time.Time { return f.now }})
	ctx := context.Background()
	if err := m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := f.js.Stream(ctx, erasurev1.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(erasurev1.DeadLetterSubject("billing"))); err != nil {
		t.Fatal(err)
	}
	if err := m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP lethe_dead_letters Dead letters kept in ERASURE_V1_DEAD_LETTERS (tasks that failed for good, not yet replayed), by category.
# TYPE lethe_dead_letters gauge
lethe_dead_letters{category="billing"} 0
lethe_dead_letters{category="contacts"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lethe_dead_letters"); err != nil {
		t.Error(err)
	}
}

// When NATS is down the NATS parts keep their last values, the Redis parts
// still update, and the last-success time stands still.
func TestFailedSampleKeepsLastValuesAndSaysSo(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := f.monitor(reg, monitor.Options{})
	ctx := context.Background()
	if err := m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	before := gauge(t, reg, "lethe_monitor_last_success_timestamp_seconds")

	f.nats.Shutdown()
	f.create(t, "job-e", "acc-e", f.now, jobs.TaskSpec{Category: "backups", Stage: "erase"})
	f.now = f.now.Add(time.Minute)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := m.Sample(sctx); err == nil {
		t.Fatal("sample with NATS down succeeded")
	}
	if got := gauge(t, reg, "lethe_monitor_last_success_timestamp_seconds"); got != before {
		t.Errorf("last success moved from %v to %v on a failed sample", before, got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantDeadLetters), "lethe_dead_letters"); err != nil {
		t.Errorf("dead letters after a failed sample: %v", err)
	}
	if got := gauge(t, reg, "lethe_jobs", "status", "running"); got != 4 {
		t.Errorf("running jobs = %v, want 4 (Redis was up)", got)
	}
	for _, part := range []string{"consumers", "dead_letters"} {
		if got := gauge(t, reg, "lethe_monitor_errors_total", "part", part); got < 1 {
			t.Errorf("errors of part %s = %v, want at least 1", part, got)
		}
	}
}

func TestRunSamplesUntilCancelled(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := f.monitor(reg, monitor.Options{Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for gauge(t, reg, "lethe_monitor_last_success_timestamp_seconds") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no successful sample within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// gauge returns the value of the series of name with the given label
// pairs, or 0 when there is none.
func gauge(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestAtRiskCountsRunningJobsNearTheirDeadline: jobs A and C were created
// about now (deadline in a month), B is already overdue and D failed.
func TestAtRiskCountsRunningJobsNearTheirDeadline(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		window time.Duration
		want   string
	}{
		{72 * time.Hour, "lethe_jobs_at_risk 0"},
		{32 * 24 * time.Hour, "lethe_jobs_at_risk 2"},
	}
	for _, tt := range tests {
		reg := prometheus.NewRegistry()
		m := f.monitor(reg, monitor.Options{AtRiskWindow: tt.window})
		if err := m.Sample(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := "# HELP lethe_jobs_at_risk Jobs that still owe an erasure (pending, running or held) whose legal deadline falls within the at-risk window (Options.AtRiskWindow, default 72h) and has not passed yet.\n# TYPE lethe_jobs_at_risk gauge\n" + tt.want + "\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lethe_jobs_at_risk"); err != nil {
			t.Errorf("window %s: %v", tt.window, err)
		}
	}
}
