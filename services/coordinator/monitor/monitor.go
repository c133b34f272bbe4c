// Package monitor samples what SREs watch and exposes it as Prometheus
// gauges: the lag of every durable consumer, the dead letters per category,
// the age of the oldest task not yet done, job counts and overdue jobs.
// Counters tell what happened; these gauges tell what is waiting, which is
// what the alert rules in deploy/prometheus/alerts.yml and the runbook in
// docs/runbook.md are built on.
//
// The monitor only reads. Every coordinator replica runs it, so each
// exports the same values; the alert rules aggregate with max by. A sample
// that fails in part keeps the last good values of that part and does not
// advance lethe_monitor_last_success_timestamp_seconds, which is how an
// alert notices a monitor that went blind.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

// Defaults of Options.
const (
	DefaultInterval = 15 * time.Second
	// DefaultRunningScanLimit bounds how many running jobs one sample loads
	// (the oldest by creation). Deadlines follow creation, so these are the
	// jobs that go overdue first; see Options.RunningScanLimit.
	DefaultRunningScanLimit = 10_000
	// DefaultDueScanLimit bounds how many overdue entries of the due index
	// one sample reads (earliest first).
	DefaultDueScanLimit = 10_000
	// DefaultAtRiskWindow is the default Options.AtRiskWindow.
	DefaultAtRiskWindow = 72 * time.Hour
)

// Streams whose durable consumers are sampled.
var consumerStreams = []string{
	erasurev1.TasksStream,
	erasurev1.ReportsStream,
	erasurev1.AccountsStream,
	erasurev1.AdvisoryStream,
}

// Broker is what the monitor reads of JetStream.
type Broker interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

var _ Broker = (jetstream.JetStream)(nil)

// Store is what the monitor reads of the job store.
type Store interface {
	CountByStatus(ctx context.Context) (map[jobs.Status]int64, error)
	ScanDue(ctx context.Context, now time.Time, fn func(jobstore.DueEntry) bool, limit int) error
	ScanStatuses(ctx context.Context, sts []jobs.Status, fn func(*jobs.Job) bool, limit int) error
}

var _ Store = (*jobstore.Store)(nil)

// Options tune the monitor. Zero values take the defaults.
type Options struct {
	// Interval between samples (default 15 s). A sample may take at most
	// this long.
	Interval time.Duration
	// AtRiskWindow: a running job whose deadline is this close counts as
	// at risk (default 72h, three days to act before the month is over).
	AtRiskWindow time.Duration
	// Categories are always reported (with 0 when nothing waits), so that
	// an alert's series exist before the first failure. Categories seen in
	// the data are reported too.
	Categories []string
	// RunningScanLimit bounds the running jobs read per sample (default
	// 10 000, the oldest first). With more running jobs, dispatched tasks
	// of younger jobs are not looked at (their age is lower bounded by the
	// older ones' in practice) and lethe_jobs_overdue saturates at the
	// number of overdue jobs among the scanned ones.
	RunningScanLimit int
	// DueScanLimit bounds the due-index entries read per sample (default
	// 10 000, earliest first). A category whose first overdue entry lies
	// beyond it is reported from its dispatched tasks only.
	DueScanLimit int
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.RunningScanLimit <= 0 {
		o.RunningScanLimit = DefaultRunningScanLimit
	}
	if o.DueScanLimit <= 0 {
		o.DueScanLimit = DefaultDueScanLimit
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AtRiskWindow <= 0 {
		o.AtRiskWindow = DefaultAtRiskWindow
	}
	return o
}

// Monitor samples the broker and the store and exposes the results.
type Monitor struct {
	broker Broker
	store  Store
	log    *zap.Logger
	opts   Options

	pendingDesc, ackPendingDesc, redeliveredDesc *prometheus.Desc
	deadDesc, oldestDesc, jobsDesc, overdueDesc  *prometheus.Desc
	atRiskDesc                                   *prometheus.Desc

	lastSuccess  prometheus.Gauge
	sampleErrors *prometheus.CounterVec

	mu   sync.Mutex
	snap snapshot
}

// snapshot is the last good value of each part of a sample. A nil part has
// never been sampled successfully and is not exposed.
type snapshot struct {
	consumers map[string][]consumerLag // by stream
	dead      map[string]uint64        // by category
	oldest    map[string]float64       // seconds, by category
	jobs      map[jobs.Status]int64
	overdue   *int64
	atRisk    *int64
}

type consumerLag struct {
	consumer                         string
	pending, ackPending, redelivered float64
}

// Parts of a sample, the label of lethe_monitor_errors_total.
const (
	partConsumers   = "consumers"
	partDeadLetters = "dead_letters"
	partJobs        = "jobs"
	partTasks       = "tasks"
)

// New returns a monitor that registers its collectors with reg (which may
// be nil).
func New(broker Broker, store Store, log *zap.Logger, reg prometheus.Registerer, opts Options) *Monitor {
	m := &Monitor{
		broker: broker, store: store, log: log, opts: opts.withDefaults(),
		pendingDesc: prometheus.NewDesc("lethe_consumer_pending_messages",
			"Messages of the consumer's stream not yet delivered to it (its lag), by stream and durable consumer.",
			[]string{"stream", "consumer"}, nil),
		ackPendingDesc: prometheus.NewDesc("lethe_consumer_ack_pending_messages",
			"Messages delivered to the consumer and not yet acknowledged, by stream and durable consumer.",
			[]string{"stream", "consumer"}, nil),
		redeliveredDesc: prometheus.NewDesc("lethe_consumer_redelivered_messages",
			"Messages awaiting acknowledgement that were delivered more than once, by stream and durable consumer.",
			[]string{"stream", "consumer"}, nil),
		deadDesc: prometheus.NewDesc("lethe_dead_letters",
			"Dead letters kept in "+erasurev1.DeadLetterStream+" (tasks that failed for good, not yet replayed), by category.",
			[]string{"category"}, nil),
		oldestDesc: prometheus.NewDesc("lethe_oldest_undone_task_age_seconds",
			"Age of the oldest task not done: since its due time for a scheduled task whose time has come, since its dispatch for a dispatched one; 0 when none waits.",
			[]string{"category"}, nil),
		jobsDesc: prometheus.NewDesc("lethe_jobs",
			"Jobs in the store, by status.",
			[]string{"status"}, nil),
		overdueDesc: prometheus.NewDesc("lethe_jobs_overdue",
			"Jobs that still owe an erasure (pending, running or held) past their legal deadline.",
			nil, nil),
		atRiskDesc: prometheus.NewDesc("lethe_jobs_at_risk",
			"Jobs that still owe an erasure (pending, running or held) whose legal deadline falls within the at-risk window (Options.AtRiskWindow, default 72h) and has not passed yet.",
			nil, nil),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lethe_monitor_last_success_timestamp_seconds",
			Help: "Unix time of the monitor's last sample in which every part succeeded.",
		}),
		sampleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_monitor_errors_total",
			Help: "Parts of monitor samples that failed (consumers, dead_letters, jobs, tasks); their gauges keep the last good values.",
		}, []string{"part"}),
	}
	if reg != nil {
		reg.MustRegister(m, m.lastSuccess, m.sampleErrors)
	}
	return m
}

// Run samples at once and then every interval until ctx is cancelled. A
// failed sample is logged and counted, never fatal: the coordinator keeps
// serving while its monitor is blind, and the alert on
// lethe_monitor_last_success_timestamp_seconds says so. Run returns nil
// when ctx is cancelled.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, m.opts.Interval)
		err := m.Sample(sctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			m.log.Warn("monitor sample incomplete; its gauges keep their last good values", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample reads everything once and updates the gauges. Parts that fail
// keep their previous values; the returned error joins their errors. Only
// a sample without error advances the last-success timestamp.
func (m *Monitor) Sample(ctx context.Context) error {
	now := m.opts.Now()
	// The parts run side by side, so that a broker that hangs until the
	// deadline does not also starve the store's parts, and the other way
	// round.
	var (
		wg        sync.WaitGroup
		consumers = map[string][]consumerLag{}
		consErrs  = make([]error, len(consumerStreams))
		dead      map[string]uint64
		deadErr   error
		counts    map[jobs.Status]int64
		countErr  error
		oldest    map[string]float64
		overdue   int64
		atRisk    int64
		tasksErr  error
		consMu    sync.Mutex
	)
	for i, name := range consumerStreams {
		wg.Go(func() {
			lags, err := m.sampleConsumers(ctx, name)
			if err != nil {
				consErrs[i] = err
				return
			}
			consMu.Lock()
			consumers[name] = lags
			consMu.Unlock()
		})
	}
	wg.Go(func() { dead, deadErr = m.sampleDeadLetters(ctx) })
	wg.Go(func() { counts, countErr = m.store.CountByStatus(ctx) })
	wg.Go(func() { oldest, overdue, atRisk, tasksErr = m.sampleTasks(ctx, now) })
	wg.Wait()

	var errs []error
	fail := func(part string, err error) {
		if err != nil {
			m.sampleErrors.WithLabelValues(part).Inc()
			errs = append(errs, err)
		}
	}
	fail(partConsumers, errors.Join(consErrs...))
	fail(partDeadLetters, deadErr)
	fail(partJobs, countErr)
	fail(partTasks, tasksErr)

	m.mu.Lock()
	if m.snap.consumers == nil {
		m.snap.consumers = map[string][]consumerLag{}
	}
	for name, lags := range consumers {
		m.snap.consumers[name] = lags
	}
	if dead != nil {
		m.snap.dead = keepZero(m.snap.dead, dead)
	}
	if counts != nil {
		m.snap.jobs = counts
	}
	if oldest != nil {
		m.snap.oldest = keepZero(m.snap.oldest, oldest)
		m.snap.overdue = &overdue
		m.snap.atRisk = &atRisk
	}
	m.mu.Unlock()

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("monitor sample: %w", err)
	}
	m.lastSuccess.Set(float64(now.UnixMilli()) / 1000)
	return nil
}

// sampleConsumers reads the durable consumers of one stream. Ephemeral
// consumers (erasectl's and the dead-letter listing's ordered readers) are
// left out: they come and go and would only churn label values.
func (m *Monitor) sampleConsumers(ctx context.Context, stream string) ([]consumerLag, error) {
	st, err := m.broker.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", stream, err)
	}
	lister := st.ListConsumers(ctx)
	var out []consumerLag
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			continue
		}
		out = append(out, consumerLag{
			consumer:    ci.Name,
			pending:     float64(ci.NumPending),
			ackPending:  float64(ci.NumAckPending),
			redelivered: float64(ci.NumRedelivered),
		})
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", stream, err)
	}
	return out, nil
}

// sampleDeadLetters counts the dead-letter stream's messages per subject.
func (m *Monitor) sampleDeadLetters(ctx context.Context) (map[string]uint64, error) {
	st, err := m.broker.Stream(ctx, erasurev1.DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", erasurev1.DeadLetterStream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(erasurev1.DeadLetterSubjectPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	out := map[string]uint64{}
	for _, c := range m.opts.Categories {
		out[c] = 0
	}
	for subj, n := range info.State.Subjects {
		out[strings.TrimPrefix(subj, erasurev1.DeadLetterSubjectPrefix)] += n
	}
	return out, nil
}

// sampleTasks finds the oldest undone task per category and counts overdue
// running jobs. Scheduled tasks come from the due index (earliest due time
// first, bounded by DueScanLimit); dispatched ones from the running jobs
// (oldest first, bounded by RunningScanLimit). Waiting tasks are not
// counted: they wait for a task that is itself scheduled or dispatched.
func (m *Monitor) sampleTasks(ctx context.Context, now time.Time) (map[string]float64, int64, int64, error) {
	oldest := map[string]float64{}
	for _, c := range m.opts.Categories {
		oldest[c] = 0
	}
	note := func(category string, since time.Time) {
		if age := now.Sub(since).Seconds(); age > oldest[category] {
			oldest[category] = age
		}
	}
	// The index is ordered by due time, so the first entry of a category is
	// its oldest; stop once every known category has one.
	found := map[string]bool{}
	err := m.store.ScanDue(ctx, now, func(e jobstore.DueEntry) bool {
		if !found[e.Task.Category] {
			found[e.Task.Category] = true
			note(e.Task.Category, e.DueAt)
		}
		return len(m.opts.Categories) == 0 || !foundAll(found, m.opts.Categories)
	}, m.opts.DueScanLimit)
	if err != nil {
		return nil, 0, 0, err
	}
	var overdue, atRisk int64
	err = m.store.ScanStatuses(ctx, jobs.ActiveStatuses, func(j *jobs.Job) bool {
		switch {
		case j.Deadline.IsZero() || !j.Status.OwesErasure():
		case now.After(j.Deadline):
			overdue++
		case j.Deadline.Sub(now) <= m.opts.AtRiskWindow:
			atRisk++
		}
		for i := range j.Tasks {
			t := &j.Tasks[i]
			if t.Status == jobs.TaskDispatched && t.DispatchedAt != nil {
				note(t.Category, *t.DispatchedAt)
			}
		}
		return true
	}, m.opts.RunningScanLimit)
	if err != nil {
		return nil, 0, 0, err
	}
	return oldest, overdue, atRisk, nil
}

func foundAll(found map[string]bool, categories []string) bool {
	for _, c := range categories {
		if !found[c] {
			return false
		}
	}
	return true
}

// Describe implements prometheus.Collector.
func (m *Monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.pendingDesc, m.ackPendingDesc, m.redeliveredDesc, m.deadDesc, m.oldestDesc, m.jobsDesc, m.overdueDesc, m.atRiskDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it exposes the last snapshot,
// so that a scrape never sees half a sample.
func (m *Monitor) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, stream := range sortedKeys(m.snap.consumers) {
		for _, c := range m.snap.consumers[stream] {
			gauge(m.pendingDesc, c.pending, stream, c.consumer)
			gauge(m.ackPendingDesc, c.ackPending, stream, c.consumer)
			gauge(m.redeliveredDesc, c.redelivered, stream, c.consumer)
		}
	}
	for cat, n := range m.snap.dead {
		gauge(m.deadDesc, float64(n), cat)
	}
	for cat, age := range m.snap.oldest {
		gauge(m.oldestDesc, age, cat)
	}
	for st, n := range m.snap.jobs {
		gauge(m.jobsDesc, float64(n), string(st))
	}
	if m.snap.overdue != nil {
		gauge(m.overdueDesc, float64(*m.snap.overdue))
	}
	if m.snap.atRisk != nil {
		gauge(m.atRiskDesc, float64(*m.snap.atRisk))
	}
}

// keepZero returns next with every category of prev that next lacks set
// to 0: a category whose dead letters were drained shows 0 rather than
// vanishing, so graphs and alerts see it resolve.
func keepZero[V uint64 | float64](prev, next map[string]V) map[string]V {
	for k := range prev {
		if _, ok := next[k]; !ok {
			next[k] = 0
		}
	}
	return next
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
