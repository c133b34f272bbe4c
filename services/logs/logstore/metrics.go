package logstore

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors. The counters read the
// Stats counters, so that tests and dashboards see the same numbers; the
// histograms are their own.
type metrics struct {
	collectors   []prometheus.Collector
	passAccounts prometheus.Histogram
	passDuration prometheus.Histogram
}

func newMetrics(st *stats, x *index) *metrics {
	counter := func(name, help string, v interface{ Load() int64 }) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	m := &metrics{
		passAccounts: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lethe_logs_pass_accounts",
			Help:    "Accounts erased together by one erasure pass: how well erasures are coalesced.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lethe_logs_pass_duration_seconds",
			Help:    "Duration of one erasure pass, from its start (after the linger) to its replies.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}),
	}
	m.collectors = []prometheus.Collector{
		m.passAccounts,
		m.passDuration,
		counter("lethe_logs_erasure_passes_total", "Erasure passes run; each erases every account waiting when it starts.", &st.passes),
		counter("lethe_logs_segments_read_total", "Segments read by erasure passes.", &st.segmentsRead),
		counter("lethe_logs_segment_rewrites_total", "Segments replaced by erasure passes (sealed and open).", &st.segmentRewrites),
		counter("lethe_logs_records_removed_total", "Records removed by erasure passes.", &st.recordsRemoved),
		counter("lethe_logs_malformed_lines_total", "Segment lines that are no record of an account, kept (never dropped), counted each time an erasure, seal or index rebuild reads them.", &st.malformed),
		counter("lethe_logs_sidecars_rebuilt_total", "Index sidecars rebuilt from their segment (missing, damaged, or RebuildIndex).", &st.sidecarsRebuilt),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lethe_logs_indexed_segments",
			Help: "Sealed segments in the in-memory index.",
		}, func() float64 { n, _ := x.size(); return float64(n) }),
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
