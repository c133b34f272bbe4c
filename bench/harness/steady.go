package harness

import (
	"context"
	"math"
	"slices"
	"time"
)

// RSSSeries is one process's resident memory over the steady-state run.
type RSSSeries struct {
	Process string `json:"process"`
	Samples int    `json:"samples"`
	// StartMB is the median RSS of the second fifth of the run (the first
	// fifth is warm-up), EndMB that of the last fifth; GrowthPct compares
	// them. SlopeMBPerMin is the least-squares slope after the warm-up.
	StartMB       float64 `json:"start_mb"`
	EndMB         float64 `json:"end_mb"`
	MaxMB         float64 `json:"max_mb"`
	PeakMB        float64 `json:"peak_mb"`
	GrowthPct     float64 `json:"growth_pct"`
	SlopeMBPerMin float64 `json:"slope_mb_per_min"`
}

// SteadyResult is a run at a constant rate, for memory growth.
type SteadyResult struct {
	Storage   Storage     `json:"storage"`
	Rate      float64     `json:"rate"`
	Seconds   float64     `json:"seconds"`
	Run       PipelineRun `json:"run"`
	Processes []RSSSeries `json:"processes"`
	// MaxGrowthPct is the largest GrowthPct of the Lethe services.
	MaxGrowthPct float64 `json:"max_growth_pct"`
	MaxGrowthOf  string  `json:"max_growth_of"`
}

// sample is one RSS reading of one process, at seconds since the start.
type sample struct {
	at  float64
	rss float64 // MB
}

// sampleRSS reads the RSS of every service every interval until ctx ends,
// and returns the series by service name.
func sampleRSS(ctx context.Context, ss []*service, interval time.Duration) map[string][]sample {
	out := make(map[string][]sample)
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for _, s := range ss {
			if u, err := s.proc.usage(); err == nil {
				out[s.name] = append(out[s.name], sample{at: time.Since(start).Seconds(), rss: float64(u.RSS) / 1e6})
			}
		}
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
}

// seriesOf summarises one process's samples.
func seriesOf(name string, xs []sample, peak uint64) RSSSeries {
	r := RSSSeries{Process: name, Samples: len(xs), PeakMB: float64(peak) / 1e6}
	if len(xs) < 5 {
		return r
	}
	fifth := len(xs) / 5
	rss := func(s []sample) []float64 {
		out := make([]float64, len(s))
		for i := range s {
			out[i] = s[i].rss
		}
		return out
	}
	r.StartMB = median(rss(xs[fifth : 2*fifth]))
	r.EndMB = median(rss(xs[len(xs)-fifth:]))
	r.MaxMB = slices.Max(rss(xs))
	// VmHWM is updated lazily by the kernel and can lag a sample.
	r.PeakMB = max(r.PeakMB, r.MaxMB)
	if r.StartMB > 0 {
		r.GrowthPct = (r.EndMB - r.StartMB) / r.StartMB * 100
	}
	// Least squares over the samples after the warm-up.
	tail := xs[fifth:]
	var sx, sy, sxx, sxy float64
	for _, s := range tail {
		sx += s.at
		sy += s.rss
		sxx += s.at * s.at
		sxy += s.at * s.rss
	}
	n := float64(len(tail))
	if d := n*sxx - sx*sx; d != 0 {
		r.SlopeMBPerMin = (n*sxy - sx*sy) / d * 60
	}
	if math.IsNaN(r.SlopeMBPerMin) {
		r.SlopeMBPerMin = 0
	}
	return r
}
