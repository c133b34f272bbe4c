package logstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// The store on the real worker runtime and an embedded JetStream: tasks
// for several accounts published at once are erased in one pass that
// rewrites each segment once, every task gets its own report with its own
// count, and footprint requests over NATS see the result.
func TestWorkerRuntimeEndToEnd(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATS(t)
	nc, js := srv.Connect(t)
	ctx := context.Background()
	if err := topology.Ensure(ctx, js, topology.Settings{
		TaskAckWait:    5 * time.Second,
		TaskMaxDeliver: 3,
		TaskBackOff:    []time.Duration{},
		Categories:     []string{erasurev1.CategoryLogs},
	}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	reports := collectReports(t, js)

	s := newStore(t, WithLinger(300*time.Millisecond))
	var erase []string
	for i := range 8 {
		erase = append(erase, fmt.Sprintf("acc-%06d", i))
	}
	keep := []string{"keep-1", "keep-2"}
	seeded := seedAccounts(t, s, smallSeed(), append(erase[:len(erase):len(erase)], keep...)...)

	// Published before the worker starts, so that its first pull fetches
	// them all and their purges wait together.
	for _, id := range erase {
		publishTask(t, js, "job-"+id, id, "delete")
	}
	publishTask(t, js, "job-bad", "keep-1", "pseudonymise")

	rt, err := worker.New(worker.Config{
		Category:     erasurev1.CategoryLogs,
		WorkerID:     "test-logs-worker",
		Concurrency:  64,
		DrainTimeout: 5 * time.Second,
		Retry:        worker.RetryPolicy{InProcessAttempts: 1, RedeliveryInitial: 50 * time.Millisecond, RedeliveryMultiplier: 2, RedeliveryMax: 200 * time.Millisecond},
	}, nc, js, s, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatalf("new runtime: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	got := make(map[string]*erasurev1.TaskReport)
	for len(got) < len(erase)+1 {
		select {
		case r := <-reports:
			if r.GetOutcome() == erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING {
				t.Errorf("task %s retried: %s", r.GetJobId(), r.GetErrorMessage())
				continue
			}
			got[r.GetJobId()] = r
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d reports within 20s", len(got), len(erase)+1)
		}
	}
	for _, id := range erase {
		r := got["job-"+id]
		if r == nil {
			t.Errorf("no report for %s", id)
			continue
		}
		if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetItemsPurged() != seeded[id].Records || r.GetAccountId() != id {
			t.Errorf("report of %s = %v, %d items; want succeeded with %d", id, r.GetOutcome(), r.GetItemsPurged(), seeded[id].Records)
		}
	}
	if r := got["job-bad"]; r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_FAILED || r.GetErrorCode() != "unsupported_action" {
		t.Errorf("report of the pseudonymise task = %v %q, want failed with unsupported_action", r.GetOutcome(), r.GetErrorCode())
	}
	if st := s.Stats(); st.Passes != 1 || st.SegmentRewrites != 3 || st.Accounts != int64(len(erase)) {
		t.Errorf("stats = %+v; want one pass of %d accounts rewriting each of the 3 segments once", st, len(erase))
	}

	fps := requestFootprint(t, nc, append([]string{erase[0], erase[7]}, keep...))
	want := []int64{0, 0, seeded["keep-1"].Records, seeded["keep-2"].Records}
	for i, fp := range fps {
		if fp.GetItems() != want[i] || fp.GetDetail()[DetailRecords] != want[i] {
			t.Errorf("footprint of %s = %d %v, want %d", fp.GetAccountId(), fp.GetItems(), fp.GetDetail(), want[i])
		}
	}
}

func publishTask(t *testing.T, js jetstream.JetStream, jobID, account, action string) {
	t.Helper()
	data, err := proto.Marshal(&erasurev1.ErasureTask{JobId: jobID, AccountId: account, Category: erasurev1.CategoryLogs, Stage: "erase", Action: action, Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), erasurev1.TaskSubject(erasurev1.CategoryLogs), data,
		jetstream.WithMsgID(erasurev1.TaskMsgID(jobID, erasurev1.CategoryLogs, "erase", 1))); err != nil {
		t.Fatalf("publish task: %v", err)
	}
}

func collectReports(t *testing.T, js jetstream.JetStream) <-chan *erasurev1.TaskReport {
	t.Helper()
	ch := make(chan *erasurev1.TaskReport, 100)
	cons, err := js.CreateOrUpdateConsumer(context.Background(), erasurev1.ReportsStream,
		jetstream.ConsumerConfig{Durable: "test-reports", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r erasurev1.TaskReport
		if err := proto.Unmarshal(m.Data(), &r); err != nil {
			t.Errorf("undecodable report: %v", err)
		}
		_ = m.Ack()
		ch <- &r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return ch
}

// requestFootprint asks the running worker over NATS, as erasectl does.
func requestFootprint(t *testing.T, nc *nats.Conn, ids []string) []*erasurev1.AccountFootprint {
	t.Helper()
	req, err := proto.Marshal(&erasurev1.FootprintRequest{AccountIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(erasurev1.FootprintSubject(erasurev1.CategoryLogs), req, 10*time.Second)
	if err != nil {
		t.Fatalf("footprint request: %v", err)
	}
	var reply erasurev1.FootprintReply
	if err := proto.Unmarshal(m.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.GetError() != "" || len(reply.GetAccounts()) != len(ids) {
		t.Fatalf("footprint reply: error %q, %d accounts for %d ids", reply.GetError(), len(reply.GetAccounts()), len(ids))
	}
	return reply.GetAccounts()
}
