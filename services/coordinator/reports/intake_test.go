package reports

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// recordingApplier records the reports that reach it.
type recordingApplier struct {
	mu   sync.Mutex
	jobs []string
	got  chan struct{}
}

func (a *recordingApplier) ApplyReport(_ context.Context, rep *erasurev1.TaskReport) (jobs.Effect, error) {
	a.mu.Lock()
	a.jobs = append(a.jobs, rep.GetJobId())
	a.mu.Unlock()
	a.got <- struct{}{}
	return jobs.Effect{}, nil
}

// TestMalformedAndOversizedReportsAreRejectedVisiblyAndDoNotBlock publishes
// garbage, an oversized report and a report with a huge error message
// ahead of a good one on the real reports stream: the bad ones are
// terminated and counted by reason, the good one is applied, and nothing
// is left pending on the consumer.
func TestMalformedAndOversizedReportsAreRejectedVisiblyAndDoNotBlock(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	settings := topology.Settings{Categories: []string{erasurev1.CategoryContacts}}
	if err := topology.Ensure(ctx, js, settings); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, erasurev1.ReportsStream, erasurev1.ReportsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	report := func(job string, errMsg string) []byte {
		b, err := proto.Marshal(&erasurev1.TaskReport{JobId: job, AccountId: "acc-1", Category: erasurev1.CategoryContacts,
			Stage: "erase", Generation: 1, Attempt: 1, Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_FAILED, ErrorMessage: errMsg})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	subject := erasurev1.ReportSubject(erasurev1.CategoryContacts)
	for _, data := range [][]byte{
		[]byte("\x0a\xff\xff not a report"),
		report("job-oversized", strings.Repeat("x", MaxReportBytes)),
		report("job-long-error", strings.Repeat("x", MaxErrorMessageBytes+1)),
		report("job-good", "store refused"),
	} {
		if _, err := js.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	applier := &recordingApplier{got: make(chan struct{}, 10)}
	in := New(cons, applier, zaptest.NewLogger(t), reg, Options{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	defer func() { stop(); <-done }()

	select {
	case <-applier.got:
	case <-time.After(20 * time.Second):
		t.Fatal("the good report was not applied within 20s: the bad ones block the queue")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer still has %d pending, %d unacked", info.NumPending, info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	applier.mu.Lock()
	defer applier.mu.Unlock()
	if len(applier.jobs) != 1 || applier.jobs[0] != "job-good" {
		t.Errorf("applied %v, want the good report only", applier.jobs)
	}
	for reason, want := range map[string]float64{"undecodable": 2, "oversized": 1} {
		if got := testutil.ToFloat64(in.rejected.WithLabelValues(reason)); got != want {
			t.Errorf("lethe_reports_rejected_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}
