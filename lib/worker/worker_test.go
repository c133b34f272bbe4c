package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/lib/worker/workertest"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

const category = "contacts"

// purgeFunc adapts a function to worker.Purger.
type purgeFunc func(ctx context.Context, t worker.Task) (worker.Result, error)

func (f purgeFunc) Purge(ctx context.Context, t worker.Task) (worker.Result, error) { return f(ctx, t) }
func (f purgeFunc) Footprint(_ context.Context, ids []string) ([]worker.Footprint, error) {
	out := make([]worker.Footprint, len(ids))
	for i, id := range ids {
		out[i] = worker.Footprint{AccountID: id, Items: int64(len(id)), Detail: map[string]int64{"rows": int64(len(id))}}
	}
	return out, nil
}

// env is the shared set-up of workertest with the checks only the
// runtime's own tests need.
type env struct{ *workertest.Env }

func setup(t *testing.T, s topology.Settings) *env {
	t.Helper()
	return &env{workertest.Start(t, category, s)}
}

func fastSettings() topology.Settings { return workertest.Settings(time.Second) }

func fastConfig() worker.Config {
	return worker.Config{
		Category:     category,
		WorkerID:     "test-worker",
		Concurrency:  2,
		DrainTimeout: 5 * time.Second,
		Retry: worker.RetryPolicy{
			InProcessAttempts:    1,
			RedeliveryInitial:    50 * time.Millisecond,
			RedeliveryMultiplier: 2,
			RedeliveryMax:        200 * time.Millisecond,
		},
	}
}

func (e *env) publishTask(t *testing.T, jobID string) { e.Publish(t, jobID, "acc-"+jobID, "delete") }

// finalReport returns the first report that is not RETRYING, and how many
// RETRYING reports came before it.
func (e *env) finalReport(t *testing.T) (*erasurev1.TaskReport, int) {
	t.Helper()
	retrying := 0
	for {
		r := e.NextReport(t)
		if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING {
			return r, retrying
		}
		if r.GetErrorMessage() == "" || r.GetErrorCode() == "" {
			t.Errorf("retrying report without reason: %v", r)
		}
		retrying++
	}
}

// deadLetters returns the dead letters stored so far.
func (e *env) deadLetters(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := e.JS.Stream(ctx, erasurev1.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

func (e *env) noReport(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case r := <-e.Reports:
		t.Fatalf("unexpected report: %v", r)
	case <-time.After(within):
	}
}

func (e *env) pendingTasks(t *testing.T) uint64 {
	t.Helper()
	s, err := e.JS.Stream(context.Background(), erasurev1.TasksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		purge        func(calls int32) (worker.Result, error)
		wantOutcome  erasurev1.TaskOutcome
		wantAttempt  uint32
		wantCode     string
		wantItems    int64
		wantMinCalls int32
		wantAnchor   time.Time
	}{
		{
			name:        "success is reported and acked",
			purge:       func(int32) (worker.Result, error) { return worker.Result{ItemsPurged: 42}, nil },
			wantOutcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED, wantAttempt: 1, wantItems: 42, wantMinCalls: 1,
		},
		{
			name: "anchors for later stages are reported with the success",
			purge: func(calls int32) (worker.Result, error) {
				if calls == 1 {
					// A failed attempt's anchors must not survive it.
					return worker.Result{Anchors: map[string]time.Time{"invoice_issued": time.Unix(1, 0)}}, errors.New("connection reset")
				}
				return worker.Result{ItemsPurged: 3, Anchors: map[string]time.Time{"invoice_issued": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}}, nil
			},
			wantOutcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED, wantAttempt: 2, wantItems: 3, wantMinCalls: 2,
			wantAnchor: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		},
		{
			name:        "already gone is success with zero items",
			purge:       func(int32) (worker.Result, error) { return worker.Result{}, nil },
			wantOutcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED, wantAttempt: 1, wantMinCalls: 1,
		},
		{
			name: "transient failure is retried on redelivery",
			purge: func(calls int32) (worker.Result, error) {
				if calls < 2 {
					return worker.Result{}, errors.New("connection reset")
				}
				return worker.Result{ItemsPurged: 7}, nil
			},
			wantOutcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED, wantAttempt: 2, wantItems: 7, wantMinCalls: 2,
		},
		{
			name: "permanent failure is reported at once",
			purge: func(int32) (worker.Result, error) {
				return worker.Result{}, worker.Permanentf("refused", "store refused the delete")
			},
			wantOutcome: erasurev1.TaskOutcome_TASK_OUTCOME_FAILED, wantAttempt: 1, wantCode: "refused", wantMinCalls: 1,
		},
		{
			name:        "transient failure on the last delivery is reported failed",
			purge:       func(int32) (worker.Result, error) { return worker.Result{}, errors.New("timeout talking to store") },
			wantOutcome: erasurev1.TaskOutcome_TASK_OUTCOME_FAILED, wantAttempt: 3, wantCode: "max_deliveries", wantMinCalls: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, fastSettings())
			var calls atomic.Int32
			reg := prometheus.NewRegistry()
			m := worker.NewMetrics(reg)
			e.Run(t, e.NC, fastConfig(), purgeFunc(func(ctx context.Context, task worker.Task) (worker.Result, error) {
				return tt.purge(calls.Add(1))
			}), m)
			e.publishTask(t, "job1")
			r, retrying := e.finalReport(t)
			if want := int(tt.wantAttempt) - 1; tt.wantCode != "refused" && retrying != want {
				t.Errorf("%d retrying reports, want %d (one per failed delivery)", retrying, want)
			}
			dead := e.deadLetters(t)
			if failed := tt.wantOutcome == erasurev1.TaskOutcome_TASK_OUTCOME_FAILED; failed != (len(dead) == 1) {
				t.Errorf("%d dead letters for outcome %v", len(dead), tt.wantOutcome)
			} else if failed {
				var task erasurev1.ErasureTask
				h := dead[0].Header
				if proto.Unmarshal(dead[0].Data, &task) != nil || task.GetJobId() != "job1" || h.Get(erasurev1.HeaderDeadCode) != tt.wantCode ||
					h.Get(erasurev1.HeaderDeadReason) == "" || h.Get(erasurev1.HeaderDeadAttempts) != fmt.Sprint(tt.wantAttempt) || h.Get(erasurev1.HeaderDeadSource) == "" {
					t.Errorf("dead letter = %v %q", h, dead[0].Data)
				}
			}
			if r.GetOutcome() != tt.wantOutcome || r.GetAttempt() != tt.wantAttempt || r.GetErrorCode() != tt.wantCode || r.GetItemsPurged() != tt.wantItems {
				t.Errorf("report = outcome %v attempt %d code %q items %d; want %v %d %q %d",
					r.GetOutcome(), r.GetAttempt(), r.GetErrorCode(), r.GetItemsPurged(), tt.wantOutcome, tt.wantAttempt, tt.wantCode, tt.wantItems)
			}
			if a := r.GetAnchors()["invoice_issued"]; tt.wantAnchor.IsZero() != (a == nil) || (a != nil && !a.AsTime().Equal(tt.wantAnchor)) {
				t.Errorf("report anchor %v, want %v", a, tt.wantAnchor)
			}
			if r.GetJobId() != "job1" || r.GetAccountId() != "acc-job1" || r.GetCategory() != category || r.GetStage() != "erase" || r.GetGeneration() != 1 || r.GetWorkerId() != "test-worker" {
				t.Errorf("report does not identify its task: %v", r)
			}
			if got := calls.Load(); got < tt.wantMinCalls {
				t.Errorf("purge called %d times, want at least %d", got, tt.wantMinCalls)
			}
			// Acked or terminated: never delivered again.
			e.noReport(t, 1500*time.Millisecond)
			if n := e.pendingTasks(t); n != 0 {
				t.Errorf("%d task messages left in the work queue, want 0", n)
			}
			outcome := "succeeded"
			if tt.wantOutcome == erasurev1.TaskOutcome_TASK_OUTCOME_FAILED {
				outcome = "failed"
			}
			if got := testutil.ToFloat64(m.Tasks().WithLabelValues(category, outcome)); got != 1 {
				t.Errorf("lethe_worker_tasks_total{outcome=%q} = %v, want 1", outcome, got)
			}
		})
	}
}

func TestBadTaskIsTerminatedAndDoesNotBlockTheQueue(t *testing.T) {
	t.Parallel()
	e := setup(t, fastSettings())
	var calls atomic.Int32
	e.Run(t, e.NC, fastConfig(), purgeFunc(func(context.Context, worker.Task) (worker.Result, error) {
		calls.Add(1)
		return worker.Result{}, nil
	}), nil)
	if _, err := e.JS.Publish(context.Background(), erasurev1.TaskSubject(category), []byte("\xff\xffnot protobuf")); err != nil {
		t.Fatal(err)
	}
	e.publishTask(t, "good")
	r := e.NextReport(t)
	if r.GetJobId() != "good" {
		t.Fatalf("report for %q, want the good task", r.GetJobId())
	}
	e.noReport(t, 1500*time.Millisecond)
	if calls.Load() != 1 {
		t.Errorf("purge called %d times, want 1 (the bad task must never reach it)", calls.Load())
	}
	if n := e.pendingTasks(t); n != 0 {
		t.Errorf("%d messages left, want 0: the bad task must be terminated", n)
	}
}

func TestHeartbeatKeepsALongPurgeFromBeingRedelivered(t *testing.T) {
	t.Parallel()
	e := setup(t, fastSettings()) // ack wait 1s
	var calls atomic.Int32
	e.Run(t, e.NC, fastConfig(), purgeFunc(func(ctx context.Context, _ worker.Task) (worker.Result, error) {
		calls.Add(1)
		select {
		case <-time.After(3500 * time.Millisecond):
		case <-ctx.Done():
			return worker.Result{}, ctx.Err()
		}
		return worker.Result{ItemsPurged: 1}, nil
	}), nil)
	e.publishTask(t, "long")
	r, _ := e.finalReport(t)
	if r.GetAttempt() != 1 || calls.Load() != 1 {
		t.Errorf("attempt %d, purge calls %d; want 1 and 1: heartbeats must hold the message", r.GetAttempt(), calls.Load())
	}
}

func TestWorkerKilledMidTaskIsRedeliveredAndCompletes(t *testing.T) {
	t.Parallel()
	e := setup(t, fastSettings())
	started := make(chan struct{})
	var once sync.Once
	// The first worker blocks mid-purge; its connection is then cut without
	// any ack, as a kill -9 would leave it.
	nc1, _ := e.Server.Connect(t)
	e.Run(t, nc1, fastConfig(), purgeFunc(func(ctx context.Context, _ worker.Task) (worker.Result, error) {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return worker.Result{}, ctx.Err()
	}), nil)
	e.publishTask(t, "crash")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("first worker never started the task")
	}
	nc1.Close()

	nc2, _ := e.Server.Connect(t)
	e.Run(t, nc2, fastConfig(), purgeFunc(func(context.Context, worker.Task) (worker.Result, error) {
		return worker.Result{ItemsPurged: 5}, nil
	}), nil)
	r := e.NextReport(t)
	if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetAttempt() != 2 || r.GetItemsPurged() != 5 {
		t.Errorf("report = %v attempt %d items %d; want succeeded on attempt 2 with 5 items", r.GetOutcome(), r.GetAttempt(), r.GetItemsPurged())
	}
}

func TestShutdownLetsRunningPurgesFinish(t *testing.T) {
	t.Parallel()
	e := setup(t, fastSettings())
	started := make(chan struct{})
	release := make(chan struct{})
	stop := e.Run(t, e.NC, fastConfig(), purgeFunc(func(context.Context, worker.Task) (worker.Result, error) {
		close(started)
		<-release
		return worker.Result{ItemsPurged: 3}, nil
	}), nil)
	e.publishTask(t, "drain")
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case <-stopped:
		t.Fatal("Run returned while a purge was still running")
	default:
	}
	close(release)
	<-stopped
	r := e.NextReport(t)
	if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetItemsPurged() != 3 {
		t.Errorf("report = %v, want the drained purge's success", r)
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	t.Parallel()
	e := setup(t, fastSettings())
	var running, peak atomic.Int32
	cfg := fastConfig()
	cfg.Concurrency = 3
	e.Run(t, e.NC, cfg, purgeFunc(func(context.Context, worker.Task) (worker.Result, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		running.Add(-1)
		return worker.Result{}, nil
	}), nil)
	for i := range 12 {
		e.publishTask(t, fmt.Sprintf("j%02d", i))
	}
	for range 12 {
		e.NextReport(t)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak concurrent purges = %d, want between 2 and 3", p)
	}
}

func TestFootprintIsAnswered(t *testing.T) {
	t.Parallel()
	e := setup(t, fastSettings())
	e.Run(t, e.NC, fastConfig(), purgeFunc(func(context.Context, worker.Task) (worker.Result, error) {
		return worker.Result{}, nil
	}), nil)
	req, _ := proto.Marshal(&erasurev1.FootprintRequest{AccountIds: []string{"a", "bbb"}})
	var reply erasurev1.FootprintReply
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := e.NC.Request(erasurev1.FootprintSubject(category), req, time.Second)
		if err == nil {
			if err := proto.Unmarshal(m.Data, &reply); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no footprint answer: %v", err)
		}
	}
	if reply.GetError() != "" || len(reply.GetAccounts()) != 2 || reply.GetAccounts()[1].GetItems() != 3 || reply.GetAccounts()[1].GetDetail()["rows"] != 3 {
		t.Errorf("footprint reply = %v", &reply)
	}
	empty, _ := proto.Marshal(&erasurev1.FootprintRequest{})
	m, err := e.NC.Request(erasurev1.FootprintSubject(category), empty, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(m.Data, &reply); err != nil || reply.GetError() == "" {
		t.Errorf("empty request answered %v (err %v), want an error", &reply, err)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		give    worker.Config
		wantErr bool
	}{
		{worker.Config{Category: "contacts"}, false},
		{worker.Config{Category: ""}, true},
		{worker.Config{Category: "Contacts"}, true},
		{worker.Config{Category: "logs.x"}, true},
		{worker.Config{Category: "logs", Concurrency: -1}, true},
	}
	for _, tt := range tests {
		err := tt.give.Validate()
		if (err != nil) != tt.wantErr {
			t.Errorf("Validate(%+v) = %v, want error %v", tt.give, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, worker.ErrInvalidConfig) {
			t.Errorf("error %v does not wrap ErrInvalidConfig", err)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		policy      func(*worker.RetryPolicy)
		err         error
		wantAttempt uint32
		wantCode    string
	}{
		{"max attempts below max deliver", func(p *worker.RetryPolicy) { p.MaxAttempts = 2 }, errors.New("flaky"), 2, "max_deliveries"},
		{"never-retried class fails at once", func(p *worker.RetryPolicy) { p.NeverRetry = []string{"quota"} }, worker.Transient("quota", errors.New("quota exhausted")), 1, "quota"},
		{"other classes are retried", func(p *worker.RetryPolicy) { p.NeverRetry = []string{"quota"} }, worker.Transient("unavailable", errors.New("down")), 3, "max_deliveries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, fastSettings())
			cfg := fastConfig()
			tt.policy(&cfg.Retry)
			e.Run(t, e.NC, cfg, purgeFunc(func(context.Context, worker.Task) (worker.Result, error) { return worker.Result{}, tt.err }), nil)
			e.publishTask(t, "j")
			r, _ := e.finalReport(t)
			if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_FAILED || r.GetAttempt() != tt.wantAttempt || r.GetErrorCode() != tt.wantCode {
				t.Errorf("report = %v attempt %d code %q; want failed on attempt %d with %q", r.GetOutcome(), r.GetAttempt(), r.GetErrorCode(), tt.wantAttempt, tt.wantCode)
			}
			if n := len(e.deadLetters(t)); n != 1 {
				t.Errorf("%d dead letters, want 1", n)
			}
		})
	}
}

func TestErrorClass(t *testing.T) {
	tests := []struct {
		give error
		want string
	}{
		{nil, ""},
		{errors.New("x"), "transient"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), "timeout"},
		{worker.Transient("unavailable", errors.New("x")), "unavailable"},
		{fmt.Errorf("w: %w", worker.Permanentf("refused", "no")), "refused"},
		{worker.Permanent(errors.New("x")), "permanent"},
	}
	for _, tt := range tests {
		if got := worker.ErrorClass(tt.give); got != tt.want {
			t.Errorf("ErrorClass(%v) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// TestNakDelayIsHonouredWithTheDefaultTopology guards the decision to run
// the task consumers without BackOff: with one, nats-server stretched a
// worker's nak delay to the BackOff step (2s became 32s).
func TestNakDelayIsHonouredWithTheDefaultTopology(t *testing.T) {
	t.Parallel()
	s := topology.DefaultSettings()
	s.TaskAckWait = 20 * time.Second
	e := setup(t, s)
	var calls atomic.Int32
	e.Run(t, e.NC, fastConfig(), purgeFunc(func(context.Context, worker.Task) (worker.Result, error) {
		if calls.Add(1) == 1 {
			return worker.Result{}, errors.New("blip")
		}
		return worker.Result{ItemsPurged: 1}, nil
	}), nil)
	e.publishTask(t, "nak")
	start := time.Now()
	r, _ := e.finalReport(t)
	// The nak delay is 50ms; anything near the 20s ack wait means the
	// server ignored it.
	if took := time.Since(start); r.GetAttempt() != 2 || took > 10*time.Second {
		t.Errorf("second delivery after %s (attempt %d); the 50ms nak delay was not honoured", took, r.GetAttempt())
	}
}
