package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// runner holds what one Run shares between its phases.
type runner struct {
	cfg     Config
	id      string
	workDir string
	logDir  string
	dbs     databases
	// The pipeline's databases, made once and shared by every stack (each
	// stack's accounts have ids of their own).
	contactsDSN, billingDSN, backupsDSN string
}

// Run measures every target of cfg and returns the report. Its error says
// which phase failed and what to do; a report is returned with it when
// some phases had finished.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, id: "b" + randomHex(4)}
	rep := &Report{Started: time.Now().UTC(), Machine: describeMachine(ctx, cfg), Size: cfg.summary()}
	start := time.Now()
	if err := r.setUp(); err != nil {
		return nil, err
	}
	defer r.tearDown()
	err := r.measure(ctx, rep)
	rep.Seconds = time.Since(start).Seconds()
	rep.Targets = targetsOf(rep)
	if r.cfg.Keep {
		rep.WorkDir = r.workDir
	}
	return rep, err
}

func (r *runner) setUp() error {
	dir := r.cfg.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "lethe-bench-")
		if err != nil {
			return fmt.Errorf("create a work directory (set -work-dir): %w", err)
		}
		dir = d
	} else {
		dir = filepath.Join(dir, r.id)
	}
	r.workDir = dir
	r.logDir = filepath.Join(dir, "log")
	if err := os.MkdirAll(r.logDir, 0o750); err != nil {
		return fmt.Errorf("create the work directory %s: %w", r.logDir, err)
	}
	r.dbs.admin = r.cfg.PostgresURL
	return nil
}

func (r *runner) tearDown() {
	if err := r.dbs.dropAll(); err != nil {
		r.say("%v", err)
	}
	if r.cfg.Keep {
		r.say("kept the work directory %s (process logs in log/)", r.workDir)
		return
	}
	if err := os.RemoveAll(r.workDir); err != nil {
		r.say("remove the work directory %s: %v", r.workDir, err)
	}
}

func (r *runner) say(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "lethe-bench: "+format+"\n", args...)
	}
}

func (r *runner) progress(line string) { r.say("%s", line) }

func (r *runner) measure(ctx context.Context, rep *Report) error {
	c := r.cfg
	if c.wants(TargetThroughput) || c.wants(TargetLatency) {
		for _, st := range c.Storages {
			res, err := r.runStorage(ctx, st)
			if res != nil {
				rep.Storages = append(rep.Storages, *res)
			}
			if err != nil {
				return fmt.Errorf("storage %s: %w", st, err)
			}
		}
	}
	if c.wants(TargetContacts) {
		dsn, err := r.dbs.create(ctx, "lethe_bench_"+r.id+"_contacts_purge")
		if err != nil {
			return err
		}
		res, err := measureContacts(ctx, dsn, c.ContactsBig, c.ContactsBigPairs, c.ContactsAccounts, c.ContactsPerAccount, r.progress)
		if err != nil {
			return fmt.Errorf("contacts purge: %w", err)
		}
		rep.Contacts = &res
	}
	if c.wants(TargetLogs) {
		res, err := measureLogs(ctx, filepath.Join(r.workDir, "logs-bench"), c.LogAccounts, c.LogOthers, c.LogHours, c.LogRecords, c.LogRepeat, r.progress)
		if err != nil {
			return fmt.Errorf("log erasure: %w", err)
		}
		rep.Logs = &res
	}
	if c.wants(TargetSchedule) {
		rep.Schedule = measureSchedule()
	}
	if c.wants(TargetSteady) {
		rate := c.SteadyRate
		if rate == 0 {
			for _, s := range rep.Storages {
				if s.Storage == c.SteadyStorage && s.Throughput != nil {
					rate = s.Throughput.JobsPerSec / 2
				}
			}
		}
		if rate <= 0 {
			return errors.New("steady state: no maximum rate was measured for its storage; give -steady-rate")
		}
		res, err := r.runSteady(ctx, c.SteadyStorage, rate)
		if res != nil {
			rep.Steady = res
		}
		if err != nil {
			return fmt.Errorf("steady state: %w", err)
		}
	}
	return nil
}

// stack is one nats-server with its Redis and the five services.
type stack struct {
	storage  Storage
	dir      string
	nats     *natsServer
	redis    *redisTarget
	stripe   *proc
	services []*service
	nc       *nats.Conn
	js       jetstream.JetStream
	tr       *tracker
}

// startBroker starts the stack's nats-server in a directory of its own.
func (r *runner) startBroker(ctx context.Context, st Storage, name string) (*stack, error) {
	if r.contactsDSN == "" {
		var err error
		for _, db := range []struct {
			dsn  *string
			name string
		}{{&r.contactsDSN, "contacts"}, {&r.billingDSN, "billing"}, {&r.backupsDSN, "backups"}} {
			if *db.dsn, err = r.dbs.create(ctx, "lethe_bench_"+r.id+"_"+db.name); err != nil {
				return nil, err
			}
		}
	}
	s := &stack{storage: st, dir: filepath.Join(r.workDir, name)}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.dir, err)
	}
	var err error
	s.nats, err = startNATS(ctx, r.cfg.NATSServer, s.dir, r.logDir, st, r.cfg.NATSPprofPort)
	if err != nil {
		return nil, err
	}
	r.say("%s: nats-server on %s (storage %s)", name, s.nats.url, st)
	return s, nil
}

// startServices starts Redis, stripe-mock when invoices are seeded, the
// five services and the lifecycle tracker.
func (r *runner) startServices(ctx context.Context, s *stack, name string) error {
	var err error
	s.redis, err = startRedis(ctx, r.cfg.RedisServer, r.cfg.RedisURL, s.dir, r.logDir, "lethe-bench:"+r.id+":"+name+":")
	if err != nil {
		return err
	}
	stripeURL := "http://127.0.0.1:9" // never called: no account has a billing customer
	if r.cfg.SeedInvoices > 0 {
		if s.stripe, stripeURL, err = startStripeMock(ctx, r.cfg.StripeMock, r.logDir); err != nil {
			return err
		}
	}
	s.services, err = startServices(ctx, serviceEnv{
		binDir: r.cfg.BinDir, logDir: r.logDir, logLevel: r.cfg.LogLevel, pprofAddr: r.cfg.CoordinatorPprof,
		natsURL: s.nats.url, redisURL: s.redis.url, redisPrefix: s.redis.prefix,
		contactsDSN: r.contactsDSN, billingDSN: r.billingDSN, backupsDSN: r.backupsDSN,
		logsRoot: filepath.Join(s.dir, "logs"), backupRoot: filepath.Join(s.dir, "backups"),
		certKey: filepath.Join(s.dir, "certificate.pem"), stripeURL: stripeURL,
		policyPath: filepath.Join(s.dir, "policy.yaml"), tokensPath: filepath.Join(s.dir, "api-tokens"),
	})
	if err != nil {
		return err
	}
	r.say("%s: coordinator and four workers ready", name)
	s.nc, err = nats.Connect(s.nats.url, nats.Name("lethe-bench"))
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		return fmt.Errorf("create jetstream context: %w", err)
	}
	s.tr, err = startTracker(s.nc)
	return err
}

// stop stops everything of the stack, the services first.
func (s *stack) stop() error {
	var errs []error
	if s.tr != nil {
		s.tr.stop()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	errs = append(errs, stopServices(s.services))
	if s.stripe != nil {
		errs = append(errs, s.stripe.stop(10*time.Second))
	}
	if s.redis != nil {
		s.redis.stop()
	}
	if s.nats != nil {
		errs = append(errs, s.nats.proc.stop(30*time.Second))
	}
	return errors.Join(errs...)
}

// procs lists the stack's processes by name, for CPU and memory: the five
// services, nats-server, and the own Redis.
func (s *stack) procs() []*service {
	out := slices.Clone(s.services)
	out = append(out, &service{name: "nats-server", proc: s.nats.proc})
	if s.redis != nil && s.redis.own != nil {
		out = append(out, &service{name: "redis-server", proc: s.redis.own})
	}
	return out
}

func (s *stack) firer(run string, r *runner) *firer {
	return &firer{js: s.js, tr: s.tr, run: run, out: r.cfg.Progress, alive: func() error {
		if err := s.tr.lost(); err != nil {
			return err
		}
		return checkAlive(s.services)
	}}
}

// runStorage measures one storage configuration: the raw ceiling, then the
// throughput run, then the latency run at half its rate, with the CPU,
// memory, Redis and stream use they caused.
func (r *runner) runStorage(ctx context.Context, st Storage) (res *StorageResult, err error) {
	name := "pipeline-" + string(st)
	s, err := r.startBroker(ctx, st, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := s.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	res = &StorageResult{Storage: st, NATSConfig: natsConfigLine(st)}
	r.say("%s: raw ceiling, %d messages of %d bytes", name, r.cfg.RawMsgs, r.cfg.RawSize)
	if res.Raw, err = measureRaw(ctx, s.nats.url, r.cfg.RawMsgs, r.cfg.RawSize, r.cfg.RawBatch); err != nil {
		return res, err
	}
	r.say("%s: raw publish %.0f msgs/s, consume %.0f msgs/s", name, res.Raw.PubPerSec, res.Raw.ConsumePerSec)

	sz := seedSizes{contacts: r.cfg.SeedContacts, logRecords: r.cfg.SeedLogRecords, invoices: r.cfg.SeedInvoices}
	res.Seeded = sz.describe()
	tput := accountIDs(r.id, string(st)+"-t", r.cfg.Jobs)
	lat := accountIDs(r.id, string(st)+"-l", r.cfg.LatencyJobs)
	if !r.cfg.wants(TargetThroughput) {
		tput = nil
	}
	if !r.cfg.wants(TargetLatency) {
		lat = nil
	}
	if !sz.empty() {
		if err := seedAccounts(ctx, slices.Concat(tput, lat), sz, r.contactsDSN, r.billingDSN, filepath.Join(s.dir, "logs"), r.progress); err != nil {
			return res, err
		}
	}
	if err := r.startServices(ctx, s, name); err != nil {
		return res, err
	}
	redisBefore, _ := s.redis.usedMemory(ctx)
	f := s.firer(r.id, r)
	jobs := 0
	if tput != nil {
		before := usageOf(s.procs())
		self0, _ := selfUsage()
		run, err := f.fire(ctx, name+" throughput", tput, r.cfg.Rate, r.cfg.Window, r.cfg.Timeout)
		if err != nil {
			return res, err
		}
		res.Throughput = &run
		jobs += len(tput)
		self1, _ := selfUsage()
		res.Processes = cpuOf(before, usageOf(s.procs()), run.Completed+run.Failed)
		res.Processes = append(res.Processes, ProcessUse{Name: "lethe-bench (this harness)", CPUSeconds: self1.CPU - self0.CPU,
			CPUMsPerJob: (self1.CPU - self0.CPU) * 1000 / float64(max(len(tput), 1)), PeakRSSMB: float64(self1.HWM) / 1e6})
		r.say("%s: %.1f jobs/s, p99 request→dispatched %.1f ms, request→completed %.1f ms",
			name, run.JobsPerSec, run.Dispatched.P99, run.Finished.P99)
	}
	if lat != nil {
		rate := r.cfg.LatencyRate
		if rate == 0 && res.Throughput != nil {
			rate = res.Throughput.JobsPerSec / 2
		}
		run, err := f.fire(ctx, name+" latency", lat, rate, 0, r.cfg.Timeout)
		if err != nil {
			return res, err
		}
		res.Latency = &run
		jobs += len(lat)
		r.say("%s: at %.1f jobs/s p99 request→dispatched %.1f ms, request→completed %.1f ms",
			name, rate, run.Dispatched.P99, run.Finished.P99)
	}
	if err := r.countMessages(ctx, s, res, jobs); err != nil {
		return res, err
	}
	// The raw ceiling again, with the services idle: on a shared machine
	// the server's rate drifts, and the ratio takes the mean of the two.
	after, err := measureRaw(ctx, s.nats.url, r.cfg.RawMsgs, r.cfg.RawSize, r.cfg.RawBatch)
	if err != nil {
		return res, err
	}
	res.RawAfter = &after
	r.say("%s: raw publish again %.0f msgs/s, consume %.0f msgs/s", name, after.PubPerSec, after.ConsumePerSec)
	if err := r.redisUse(ctx, s, res, jobs, redisBefore); err != nil {
		return res, err
	}
	for _, p := range s.procs() {
		if u, err := p.proc.usage(); err == nil {
			for i := range res.Processes {
				if res.Processes[i].Name == p.name {
					res.Processes[i].PeakRSSMB = float64(u.HWM) / 1e6
				}
			}
		}
	}
	res.RawPubPerSec = (res.Raw.PubPerSec + after.PubPerSec) / 2
	if res.Throughput != nil && res.RawPubPerSec > 0 {
		res.Ratio = res.Throughput.JobsPerSec * res.MessagesPerJob / res.RawPubPerSec
		res.RatioNine = res.Throughput.JobsPerSec * issueMessagesPerJob / res.RawPubPerSec
	}
	return res, nil
}

// issueMessagesPerJob is the message pattern the issue's targets were set
// with: 9 persisted messages per job.
const issueMessagesPerJob = 9

// countMessages reads how many messages each stream stored, and how many
// the tasks work queue deleted again, per job of the runs.
func (r *runner) countMessages(ctx context.Context, s *stack, res *StorageResult, jobs int) error {
	if jobs == 0 {
		return nil
	}
	res.Streams = make(map[string]uint64)
	var total, deletes uint64
	names := s.js.StreamNames(ctx)
	for n := range names.Name() {
		st, err := s.js.Stream(ctx, n)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", n, err)
		}
		info := st.CachedInfo()
		res.Streams[n] = info.State.LastSeq
		total += info.State.LastSeq
		if n == erasurev1.TasksStream {
			deletes = info.State.LastSeq - info.State.Msgs
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	res.MessagesPerJob = float64(total) / float64(jobs)
	res.StoreWritesPerJob = float64(total+deletes) / float64(jobs)
	return nil
}

// redisUse measures what the runs' jobs keep in Redis.
func (r *runner) redisUse(ctx context.Context, s *stack, res *StorageResult, jobs int, before int64) error {
	if jobs == 0 {
		return nil
	}
	bytes, keys, err := s.redis.prefixUsage(ctx)
	if err != nil {
		return err
	}
	res.Redis = RedisUse{Keys: keys, Bytes: bytes, BytesPerJob: float64(bytes) / float64(jobs), Jobs: jobs}
	if s.redis.own != nil {
		if after, err := s.redis.usedMemory(ctx); err == nil {
			res.Redis.UsedMemoryPerJob = float64(after-before) / float64(jobs)
		}
	}
	return nil
}

// runSteady runs the pipeline at rate for the configured duration and
// samples the services' RSS.
func (r *runner) runSteady(ctx context.Context, st Storage, rate float64) (res *SteadyResult, err error) {
	name := "steady-" + string(st)
	s, err := r.startBroker(ctx, st, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := s.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	if err := r.startServices(ctx, s, name); err != nil {
		return nil, err
	}
	res = &SteadyResult{Storage: st, Rate: rate}
	n := max(int(rate*r.cfg.SteadyDuration.Seconds()), 1)
	accounts := accountIDs(r.id, "steady", n)
	sctx, stopSampling := context.WithCancel(ctx)
	samples := make(chan map[string][]sample, 1)
	go func() { samples <- sampleRSS(sctx, s.services, r.cfg.SteadyInterval) }()
	start := time.Now()
	run, err := s.firer(r.id, r).fire(ctx, name, accounts, rate, 0, r.cfg.SteadyDuration+r.cfg.Timeout)
	stopSampling()
	series := <-samples
	res.Seconds = time.Since(start).Seconds()
	res.Run = run
	if err != nil {
		return res, err
	}
	for _, svc := range s.services {
		var peak uint64
		if u, err := svc.proc.usage(); err == nil {
			peak = u.HWM
		}
		rs := seriesOf(svc.name, series[svc.name], peak)
		res.Processes = append(res.Processes, rs)
		if rs.GrowthPct > res.MaxGrowthPct || res.MaxGrowthOf == "" {
			res.MaxGrowthPct, res.MaxGrowthOf = rs.GrowthPct, svc.name
		}
	}
	return res, nil
}

// usageOf reads every process's usage now; a process whose /proc cannot be
// read is left out.
func usageOf(ps []*service) map[string]usage {
	out := make(map[string]usage, len(ps))
	for _, p := range ps {
		if u, err := p.proc.usage(); err == nil {
			out[p.name] = u
		}
	}
	return out
}

// cpuOf is each process's CPU time between two readings, per job too.
func cpuOf(before, after map[string]usage, jobs int) []ProcessUse {
	var out []ProcessUse
	for name, a := range after {
		b, ok := before[name]
		if !ok {
			continue
		}
		cpu := a.CPU - b.CPU
		out = append(out, ProcessUse{Name: name, CPUSeconds: cpu, CPUMsPerJob: cpu * 1000 / float64(max(jobs, 1)), PeakRSSMB: float64(a.HWM) / 1e6})
	}
	slices.SortFunc(out, func(x, y ProcessUse) int { return processOrder(x.Name) - processOrder(y.Name) })
	return out
}

func processOrder(name string) int {
	order := []string{BinCoordinator, BinBackups, BinContacts, BinLogs, BinBilling, "nats-server", "redis-server"}
	if i := slices.Index(order, name); i >= 0 {
		return i
	}
	return len(order)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the process instead
	return hex.EncodeToString(b)
}
