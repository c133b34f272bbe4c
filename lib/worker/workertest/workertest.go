// Package workertest sets up what a test of a purger on the real worker
// runtime needs: an embedded NATS server with the erasure topology for one
// category, a collector of the task reports, tasks published as the
// coordinator publishes them, and runtimes that run until the test ends.
// The runtime's own tests and every store's end-to-end test share it, so
// that they all run against the same set-up. Import it from _test.go files
// only.
package workertest

import (
	"context"
	"sync"
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

// ReportTimeout is how long NextReport waits for a report.
const ReportTimeout = 20 * time.Second

// Env is an embedded NATS server with JetStream, the erasure topology for
// one category, and a consumer that collects every task report.
type Env struct {
	// Server is the embedded server; tests reach it again with
	// Server.Connect, or stop and restart it.
	Server *testenv.NATSServer
	// NC and JS are a client connection, closed when the test ends.
	NC *nats.Conn
	JS jetstream.JetStream
	// Category is the one category whose tasks the topology carries.
	Category string
	// Reports receives every task report, decoded, in the order received.
	Reports <-chan *erasurev1.TaskReport
}

// Settings returns topology settings fit for tests: tasks are redelivered
// after ackWait without a heartbeat, delivered at most 3 times, and without
// back-off between redeliveries.
func Settings(ackWait time.Duration) topology.Settings {
	return topology.Settings{TaskAckWait: ackWait, TaskMaxDeliver: 3, TaskBackOff: []time.Duration{}}
}

// Start starts an embedded NATS server, creates the erasure topology with
// settings for category alone (settings.Categories is ignored), and starts
// collecting task reports. Everything stops when the test ends.
func Start(t testing.TB, category string, settings topology.Settings) *Env {
	t.Helper()
	srv := testenv.StartNATS(t)
	nc, js := srv.Connect(t)
	settings.Categories = []string{category}
	ctx := context.Background()
	if err := topology.Ensure(ctx, js, settings); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	reports := make(chan *erasurev1.TaskReport, 100)
	cons, err := js.CreateOrUpdateConsumer(ctx, erasurev1.ReportsStream,
		jetstream.ConsumerConfig{Durable: "test-reports", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("create report consumer: %v", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r erasurev1.TaskReport
		if err := proto.Unmarshal(m.Data(), &r); err != nil {
			t.Errorf("undecodable report: %v", err)
		}
		_ = m.Ack()
		reports <- &r
	})
	if err != nil {
		t.Fatalf("consume reports: %v", err)
	}
	t.Cleanup(cc.Stop)
	return &Env{Server: srv, NC: nc, JS: js, Category: category, Reports: reports}
}

// Publish publishes the first-generation "erase" task of the job for the
// account, with the message id the coordinator gives it.
func (e *Env) Publish(t testing.TB, jobID, accountID, action string) {
	t.Helper()
	data, err := proto.Marshal(&erasurev1.ErasureTask{JobId: jobID, AccountId: accountID, Category: e.Category, Stage: "erase", Action: action, Generation: 1})
	if err != nil {
		t.Fatalf("encode task: %v", err)
	}
	if _, err := e.JS.Publish(context.Background(), erasurev1.TaskSubject(e.Category), data,
		jetstream.WithMsgID(erasurev1.TaskMsgID(jobID, e.Category, "erase", 1))); err != nil {
		t.Fatalf("publish task: %v", err)
	}
}

// NextReport returns the next task report, and fails the test when none
// comes within ReportTimeout.
func (e *Env) NextReport(t testing.TB) *erasurev1.TaskReport {
	t.Helper()
	select {
	case r := <-e.Reports:
		return r
	case <-time.After(ReportTimeout):
		t.Fatalf("no report within %s", ReportTimeout)
		return nil
	}
}

// Run runs a worker runtime for cfg and p on the connection nc (e.NC, or
// one of the test's own from Server.Connect) until the test ends or stop
// is called, whichever is first. m may be nil. Run's error fails the test.
func (e *Env) Run(t testing.TB, nc *nats.Conn, cfg worker.Config, p worker.Purger, m *worker.Metrics) (stop func()) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("create jetstream context: %v", err)
	}
	rt, err := worker.New(cfg, nc, js, p, zaptest.NewLogger(t), m)
	if err != nil {
		t.Fatalf("new runtime: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Footprint asks the running worker of the category for the footprints of
// accounts over NATS, as erasectl does, and fails the test unless it
// answers with one footprint per account.
func (e *Env) Footprint(t testing.TB, accounts []string) []*erasurev1.AccountFootprint {
	t.Helper()
	req, err := proto.Marshal(&erasurev1.FootprintRequest{AccountIds: accounts})
	if err != nil {
		t.Fatalf("encode footprint request: %v", err)
	}
	m, err := e.NC.Request(erasurev1.FootprintSubject(e.Category), req, 10*time.Second)
	if err != nil {
		t.Fatalf("footprint request: %v", err)
	}
	var reply erasurev1.FootprintReply
	if err := proto.Unmarshal(m.Data, &reply); err != nil {
		t.Fatalf("decode footprint reply: %v", err)
	}
	if reply.GetError() != "" || len(reply.GetAccounts()) != len(accounts) {
		t.Fatalf("footprint reply: error %q, %d accounts for %d asked", reply.GetError(), len(reply.GetAccounts()), len(accounts))
	}
	return reply.GetAccounts()
}
