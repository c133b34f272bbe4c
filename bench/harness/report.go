package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Report is everything one run measured. Its JSON form is the harness's
// -o json output.
type Report struct {
	Started  time.Time       `json:"started"`
	Seconds  float64         `json:"seconds"`
	Machine  Machine         `json:"machine"`
	Size     map[string]any  `json:"size"`
	Targets  []TargetRow     `json:"targets"`
	Storages []StorageResult `json:"storages,omitempty"`
	Contacts *ContactsResult `json:"contacts,omitempty"`
	Logs     *LogsResult     `json:"logs,omitempty"`
	Schedule *ScheduleResult `json:"schedule,omitempty"`
	Steady   *SteadyResult   `json:"steady,omitempty"`
	WorkDir  string          `json:"work_dir,omitempty"`
}

// Machine is what the figures were measured on.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	LoadAvg    string `json:"load_avg_at_start"`
	MemoryMB   int64  `json:"memory_mb"`
	Go         string `json:"go"`
	NATSServer string `json:"nats_server"`
	Redis      string `json:"redis,omitempty"`
	PostgreSQL string `json:"postgresql,omitempty"`
	Kernel     string `json:"kernel,omitempty"`
}

// StorageResult is one storage configuration's pipeline figures.
type StorageResult struct {
	Storage    Storage `json:"storage"`
	NATSConfig string  `json:"nats_config"`
	Seeded     string  `json:"seeded_per_account"`
	// Raw is measured before the pipeline runs, RawAfter after them;
	// RawPubPerSec, the mean of their publish rates, is the ratio's.
	Raw          RawCeiling   `json:"raw"`
	RawAfter     *RawCeiling  `json:"raw_after,omitempty"`
	RawPubPerSec float64      `json:"raw_pub_msgs_per_sec"`
	Throughput   *PipelineRun `json:"throughput,omitempty"`
	Latency      *PipelineRun `json:"latency,omitempty"`
	// MessagesPerJob counts the messages the streams stored per job of the
	// runs; StoreWritesPerJob adds the tasks work queue's deletes.
	MessagesPerJob    float64           `json:"messages_per_job"`
	StoreWritesPerJob float64           `json:"store_writes_per_job"`
	Streams           map[string]uint64 `json:"stream_messages,omitempty"`
	// Ratio is jobs/s × MessagesPerJob ÷ RawPubPerSec; RatioNine the
	// same with the 9 messages per job of the message pattern.
	Ratio     float64      `json:"ratio"`
	RatioNine float64      `json:"ratio_at_9_messages"`
	Processes []ProcessUse `json:"processes,omitempty"`
	Redis     RedisUse     `json:"redis"`
}

// ProcessUse is one process's CPU during the throughput run and its peak
// memory.
type ProcessUse struct {
	Name        string  `json:"name"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUMsPerJob float64 `json:"cpu_ms_per_job"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
}

// RedisUse is what the runs' jobs keep in Redis once finished.
type RedisUse struct {
	Jobs int   `json:"jobs"`
	Keys int64 `json:"keys"`
	// Bytes sums MEMORY USAGE over the run's keys.
	Bytes       int64   `json:"bytes"`
	BytesPerJob float64 `json:"bytes_per_job"`
	// UsedMemoryPerJob is INFO used_memory's growth per job, with the
	// harness's own Redis only (a shared one counts others' keys too).
	UsedMemoryPerJob float64 `json:"used_memory_per_job,omitempty"`
}

// ScheduleResult is the scheduler's target: 1,000,000 pending stages in
// less than 1 GiB of Redis, and the cost per due stage flat from 10k to 1M
// pending. The scheduler's Go benchmarks (BenchmarkDueScan and
// BenchmarkPendingStageMemory in services/coordinator/jobstore) measure
// it; an end-to-end figure of the harness belongs in measureSchedule.
type ScheduleResult struct {
	Status string `json:"status"`
	Note   string `json:"note"`
}

// measureSchedule is the hook of the scale-of-the-schedule target. It
// measures nothing yet and says where the figures are.
func measureSchedule() *ScheduleResult {
	return &ScheduleResult{Status: "not measured",
		Note: "not by the harness: cd services/coordinator && go test -run '^$' -bench 'DueScan|PendingStageMemory' ./jobstore"}
}

// TargetRow is one line of the targets table.
type TargetRow struct {
	Target   string  `json:"target"`
	Measured string  `json:"measured"`
	Ratio    float64 `json:"ratio"`
	Goal     string  `json:"goal"`
	// Status is "met", "missed" or "not measured".
	Status string `json:"status"`
}

// targetsOf derives the targets table from the results.
func targetsOf(rep *Report) []TargetRow {
	var rows []TargetRow
	status := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	for _, s := range rep.Storages {
		goal := 0.25
		if s.Storage == StorageAlways {
			goal = 0.6
		}
		if t := s.Throughput; t != nil {
			rows = append(rows, TargetRow{
				Target: fmt.Sprintf("throughput, %s storage (%s)", s.Storage, s.Seeded),
				// Judged as the issue states the target: 9 messages per
				// job, whatever Lethe stores; the ratio with the messages
				// it does store is shown beside it.
				Measured: fmt.Sprintf("%.1f jobs/s × 9 ÷ raw %.0f msgs/s (with the %.1f msgs/job stored: %.3f)",
					t.JobsPerSec, s.RawPubPerSec, s.MessagesPerJob, s.Ratio),
				Ratio: s.RatioNine, Goal: fmt.Sprintf("≥ %.2f", goal), Status: status(s.RatioNine >= goal),
			})
		}
		if l := s.Latency; l != nil {
			rows = append(rows,
				TargetRow{
					Target:   fmt.Sprintf("p99 request → all dispatched, %s, %.0f jobs/s", s.Storage, l.Rate),
					Measured: fmt.Sprintf("p50 %.1f, p99 %.1f, max %.1f ms", l.Dispatched.P50, l.Dispatched.P99, l.Dispatched.Max),
					Ratio:    l.Dispatched.P99 / 50, Goal: "< 50 ms", Status: status(l.Dispatched.N > 0 && l.Dispatched.P99 < 50),
				},
				TargetRow{
					Target:   fmt.Sprintf("p99 request → completed, %s, %.0f jobs/s", s.Storage, l.Rate),
					Measured: fmt.Sprintf("p50 %.1f, p99 %.1f, max %.1f ms", l.Finished.P50, l.Finished.P99, l.Finished.Max),
					Ratio:    l.Finished.P99 / 100, Goal: "< 100 ms", Status: status(l.Finished.N > 0 && l.Finished.P99 < 100),
				})
		}
	}
	if c := rep.Contacts; c != nil {
		for _, p := range []PurgeRatio{c.Big, c.Many} {
			rows = append(rows, TargetRow{
				Target:   fmt.Sprintf("contacts purge, %d × %d contacts", p.Accounts, p.ContactsPerAccount),
				Measured: fmt.Sprintf("purge %.0f rows/s, DELETE %.0f rows/s", p.PurgeRowsPerSec, p.RawRowsPerSec),
				Ratio:    p.Ratio, Goal: "≥ 0.80", Status: status(p.Ratio >= 0.8),
			})
		}
	}
	if l := rep.Logs; l != nil {
		rows = append(rows,
			TargetRow{
				Target:   fmt.Sprintf("log erasure, %d accounts together vs 1", l.AccountsTogether),
				Measured: fmt.Sprintf("%.0f ms vs %.0f ms, %d pass(es)", l.TogetherSeconds*1000, l.OneSeconds*1000, l.TogetherPasses),
				Ratio:    l.TogetherRatio, Goal: "≤ 1.5", Status: status(l.TogetherRatio <= 1.5),
			},
			TargetRow{
				Target:   "segment rewrite vs zcat | grep -v | gzip -1",
				Measured: fmt.Sprintf("%.1f MB/s vs %.1f MB/s", l.RewriteMBps, l.ShellMBps),
				Ratio:    l.RewriteRatio, Goal: "≥ 0.70", Status: status(l.RewriteRatio >= 0.7),
			})
	}
	if s := rep.Schedule; s != nil {
		rows = append(rows, TargetRow{Target: "scale of the schedule", Measured: "-", Goal: "1M pending < 1 GiB; cost per due stage flat", Status: s.Status})
	}
	if s := rep.Steady; s != nil {
		rows = append(rows, TargetRow{
			Target:   fmt.Sprintf("steady state, %s, %.0f jobs/s for %s", s.Storage, s.Rate, time.Duration(s.Seconds*float64(time.Second)).Round(time.Second).String()),
			Measured: fmt.Sprintf("largest RSS growth %+.1f%% (%s)", s.MaxGrowthPct, s.MaxGrowthOf),
			Ratio:    s.MaxGrowthPct / 100, Goal: "no growth (≤ +10%)", Status: status(s.MaxGrowthPct <= 10),
		})
	}
	return rows
}

// Missed lists the targets the report missed.
func (rep *Report) Missed() []string {
	var out []string
	for _, t := range rep.Targets {
		if t.Status == "missed" {
			out = append(out, t.Target)
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteTable writes the report for people: the targets first, then the
// figures behind them.
func (rep *Report) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	m := rep.Machine
	fmt.Fprintf(bw, "machine: %d CPUs (%s), %d MB, load %s; %s; nats-server %s; redis %s; %s\n",
		m.CPUs, m.CPUModel, m.MemoryMB, m.LoadAvg, m.Go, m.NATSServer, m.Redis, m.PostgreSQL)
	fmt.Fprintf(bw, "run: %s, %.0f s\n\n", rep.Started.Format(time.RFC3339), rep.Seconds)
	tw := tabwriter.NewWriter(bw, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tMEASURED\tRATIO\tGOAL\tSTATUS")
	for _, t := range rep.Targets {
		ratio := "-"
		if t.Status != "not measured" {
			ratio = fmt.Sprintf("%.2f", t.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Target, t.Measured, ratio, t.Goal, t.Status)
	}
	tw.Flush()
	for _, s := range rep.Storages {
		fmt.Fprintf(bw, "\nstorage %s (%s), seeded per account: %s\n", s.Storage, s.NATSConfig, s.Seeded)
		fmt.Fprintf(bw, "  raw before: publish %.0f msgs/s, consume %.0f msgs/s (%d × %d B, batch %d)\n",
			s.Raw.PubPerSec, s.Raw.ConsumePerSec, s.Raw.Msgs, s.Raw.Size, s.Raw.Batch)
		if a := s.RawAfter; a != nil {
			fmt.Fprintf(bw, "  raw after:  publish %.0f msgs/s, consume %.0f msgs/s; the ratio uses the mean publish rate %.0f msgs/s\n",
				a.PubPerSec, a.ConsumePerSec, s.RawPubPerSec)
		}
		for _, run := range []struct {
			name string
			r    *PipelineRun
		}{{"throughput", s.Throughput}, {"latency", s.Latency}} {
			if run.r == nil {
				continue
			}
			r := run.r
			rate := "as fast as taken, window " + fmt.Sprint(r.Window)
			if r.Rate > 0 {
				rate = fmt.Sprintf("%.1f jobs/s requested", r.Rate)
			}
			fmt.Fprintf(bw, "  %s: %d jobs (%s): %d completed, %d failed in %.1f s = %.1f jobs/s\n",
				run.name, r.Jobs, rate, r.Completed, r.Failed, r.Seconds, r.JobsPerSec)
			fmt.Fprintf(bw, "    request → all dispatched: p50 %.1f, p99 %.1f, max %.1f ms; request → completed: p50 %.1f, p99 %.1f, max %.1f ms\n",
				r.Dispatched.P50, r.Dispatched.P99, r.Dispatched.Max, r.Finished.P50, r.Finished.P99, r.Finished.Max)
		}
		if s.MessagesPerJob > 0 {
			fmt.Fprintf(bw, "  messages stored per job %.2f, store writes per job %.2f (with the work queue's deletes); streams:", s.MessagesPerJob, s.StoreWritesPerJob)
			for _, n := range slices.Sorted(maps.Keys(s.Streams)) {
				fmt.Fprintf(bw, " %s=%d", n, s.Streams[n])
			}
			fmt.Fprintln(bw)
			fmt.Fprintf(bw, "  ratio jobs/s × %.2f ÷ raw = %.3f (× 9: %.3f)\n", s.MessagesPerJob, s.Ratio, s.RatioNine)
		}
		if len(s.Processes) > 0 {
			fmt.Fprintln(bw, "  CPU during the throughput run, and peak RSS:")
			tw := tabwriter.NewWriter(bw, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "    PROCESS\tCPU s\tCPU ms/job\tPEAK RSS MB")
			for _, p := range s.Processes {
				fmt.Fprintf(tw, "    %s\t%.2f\t%.3f\t%.1f\n", p.Name, p.CPUSeconds, p.CPUMsPerJob, p.PeakRSSMB)
			}
			tw.Flush()
		}
		if s.Redis.Jobs > 0 {
			fmt.Fprintf(bw, "  redis: %d keys, %.0f bytes per finished job (MEMORY USAGE)", s.Redis.Keys, s.Redis.BytesPerJob)
			if s.Redis.UsedMemoryPerJob != 0 {
				fmt.Fprintf(bw, ", used_memory +%.0f bytes per job", s.Redis.UsedMemoryPerJob)
			}
			fmt.Fprintln(bw)
		}
	}
	if c := rep.Contacts; c != nil {
		fmt.Fprintf(bw, "\ncontacts purge (batch %d) vs DELETE … WHERE account_id = $1:\n", c.BatchSize)
		for _, p := range []PurgeRatio{c.Big, c.Many} {
			fmt.Fprintf(bw, "  %d × %d contacts: purge %d rows in %.2f s, DELETE %d rows in %.2f s, ratio %.2f\n",
				p.Accounts, p.ContactsPerAccount, p.PurgeRows, p.PurgeSeconds, p.RawRows, p.RawSeconds, p.Ratio)
		}
	}
	if l := rep.Logs; l != nil {
		fmt.Fprintf(bw, "\nlog erasure: %d segments, %.1f MB (%.1f MB gzip), %d accounts erased together + %d staying, %d records per account and hour; median of %d\n",
			l.Segments, float64(l.UncompressedBytes)/1e6, float64(l.CompressedBytes)/1e6, l.AccountsTogether, l.OtherAccounts, l.RecordsPerHour, l.Repeat)
		fmt.Fprintf(bw, "  1 account %.1f ms; %d together %.1f ms (%d pass, %d rewrites); linger %.0f ms, parallelism %d\n",
			l.OneSeconds*1000, l.AccountsTogether, l.TogetherSeconds*1000, l.TogetherPasses, l.TogetherRewrites, l.LingerMS, l.Parallelism)
		fmt.Fprintf(bw, "  zcat | grep -v -F -f | gzip -1, segment after segment: %.1f ms\n", l.ShellSeconds*1000)
	}
	if s := rep.Steady; s != nil {
		fmt.Fprintf(bw, "\nsteady state (%s, %.1f jobs/s, %.0f s, %d jobs, %d failed):\n", s.Storage, s.Rate, s.Seconds, s.Run.Jobs, s.Run.Failed)
		tw := tabwriter.NewWriter(bw, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PROCESS\tSAMPLES\tSTART MB\tEND MB\tMAX MB\tGROWTH\tSLOPE MB/min")
		for _, p := range s.Processes {
			fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.1f\t%+.1f%%\t%+.3f\n", p.Process, p.Samples, p.StartMB, p.EndMB, p.MaxMB, p.GrowthPct, p.SlopeMBPerMin)
		}
		tw.Flush()
	}
	if s := rep.Schedule; s != nil {
		fmt.Fprintf(bw, "\nscale of the schedule: %s (%s)\n", s.Status, s.Note)
	}
	if rep.WorkDir != "" {
		fmt.Fprintf(bw, "\nwork directory kept: %s\n", rep.WorkDir)
	}
	return bw.Flush()
}

// describeMachine reads what the figures depend on.
func describeMachine(ctx context.Context, cfg Config) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(data))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMB = kb / 1024
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if cfg.NATSServer != "" {
		m.NATSServer = strings.TrimPrefix(binaryVersion(ctx, cfg.NATSServer, "--version"), "nats-server: ")
	}
	if cfg.RedisServer != "" {
		m.Redis = binaryVersion(ctx, cfg.RedisServer, "--version")
		if _, v, ok := strings.Cut(m.Redis, "v="); ok {
			m.Redis, _, _ = strings.Cut(v, " ")
		}
	} else if cfg.RedisURL != "" {
		m.Redis = "shared at -redis-url"
	}
	if cfg.PostgresURL != "" {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(pctx, cfg.PostgresURL); err == nil {
			var v string
			if conn.QueryRow(pctx, "SHOW server_version").Scan(&v) == nil {
				m.PostgreSQL = "PostgreSQL " + v
			}
			conn.Close(context.WithoutCancel(ctx))
		}
	}
	return m
}

// natsConfigLine is the JetStream setting of a storage configuration, as
// written into the server's configuration.
func natsConfigLine(st Storage) string {
	if st == StorageAlways {
		return "jetstream { sync_interval: always }"
	}
	return "jetstream {} (sync_interval default: 2m)"
}

// describe says what each account was seeded with.
func (s seedSizes) describe() string {
	if s.empty() {
		return "no data"
	}
	return fmt.Sprintf("%d contacts, %d log records, %d invoices", s.contacts, s.logRecords, s.invoices)
}

// summary is the sizes of the run, for the report.
func (c Config) summary() map[string]any {
	return map[string]any{
		"storages": c.Storages, "targets": c.Targets,
		"jobs": c.Jobs, "window": c.Window, "rate": c.Rate, "latency_jobs": c.LatencyJobs, "latency_rate": c.LatencyRate,
		"seed_contacts": c.SeedContacts, "seed_log_records": c.SeedLogRecords, "seed_invoices": c.SeedInvoices,
		"raw_msgs": c.RawMsgs, "raw_size": c.RawSize, "raw_batch": c.RawBatch,
		"contacts_big": c.ContactsBig, "contacts_big_pairs": c.ContactsBigPairs, "contacts_accounts": c.ContactsAccounts, "contacts_per_account": c.ContactsPerAccount,
		"log_accounts": c.LogAccounts, "log_others": c.LogOthers, "log_hours": c.LogHours, "log_records": c.LogRecords, "log_repeat": c.LogRepeat,
		"steady_duration": c.SteadyDuration.String(), "steady_rate": c.SteadyRate, "steady_storage": c.SteadyStorage,
		"log_level": c.LogLevel,
	}
}
