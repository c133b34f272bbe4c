package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the runtime's Prometheus collectors. A nil *Metrics records
// nothing.
type Metrics struct {
	tasks    *prometheus.CounterVec
	items    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_worker_tasks_total",
			Help: "Task deliveries handled, by category and outcome (succeeded, failed, retry, bad_task, shutdown).",
		}, []string{"category", "outcome"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_worker_items_purged_total",
			Help: "Items (rows, records, files) removed or changed by successful purges.",
		}, []string{"category"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lethe_worker_purge_duration_seconds",
			Help:    "Time from a task's delivery to its ack, nak or term.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}, []string{"category", "outcome"}),
	}
	reg.MustRegister(m.tasks, m.items, m.duration)
	return m
}

func (m *Metrics) observe(category, outcome string, items int64, took time.Duration) {
	if m == nil {
		return
	}
	m.tasks.WithLabelValues(category, outcome).Inc()
	if outcome == string(outcomeSucceeded) {
		m.items.WithLabelValues(category).Add(float64(items))
	}
	m.duration.WithLabelValues(category, outcome).Observe(took.Seconds())
}

// Tasks exposes the task counter, for tests and dashboards built in code.
func (m *Metrics) Tasks() *prometheus.CounterVec { return m.tasks }
