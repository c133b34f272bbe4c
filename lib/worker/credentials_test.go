package worker_test

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/brokerauth/authtest"
	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// TestServeWithItsOwnCredentials runs a worker service with nothing but
// its category's broker permissions: it waits for the coordinator to
// create its consumer, purges a task until it succeeds, reports a
// permanent failure with a dead letter, answers a footprint request, and
// the broker never refuses it anything.
func TestServeWithItsOwnCredentials(t *testing.T) {
	t.Parallel()
	srv := authtest.Start(t, []string{category})
	as := func(identity string) (*nats.Conn, jetstream.JetStream) {
		opts, err := srv.Auth(identity).Options(identity)
		if err != nil {
			t.Fatal(err)
		}
		nc, js, err := natsconn.Connect(srv.URL, "test-"+identity, zaptest.NewLogger(t), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc, js
	}

	var cfg worker.ServiceConfig
	cfg.NATSURL, cfg.NATS, cfg.HTTPAddr = srv.URL, srv.Auth(brokerauth.Worker(category)), "127.0.0.1:0"
	cfg.AwaitTopology = true
	cfg.Runtime = fastConfig()
	cfg.Runtime.PullExpiry = time.Second // a quicker stop
	cfg.Topology = fastSettings()
	cfg.Topology.Categories = []string{category}
	// Every line the worker logs, to find the broker's refusals in.
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	purger := purgeFunc(func(_ context.Context, tk worker.Task) (worker.Result, error) {
		if tk.JobID == "job-refused" {
			return worker.Result{}, worker.Permanentf("refused", "store refused the purge")
		}
		return worker.Result{ItemsPurged: 3}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Started before the topology exists: it must wait, not create it.
	go func() { done <- worker.Serve(ctx, cfg, purger, nil, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	_, cjs := as(brokerauth.Coordinator)
	bg := context.Background()
	if err := topology.Ensure(bg, cjs, cfg.Topology); err != nil {
		t.Fatal(err)
	}
	reports, err := cjs.CreateOrUpdateConsumer(bg, erasurev1.ReportsStream, jetstream.ConsumerConfig{Durable: "test-reports", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"job-ok", "job-refused"} {
		data, _ := proto.Marshal(&erasurev1.ErasureTask{JobId: job, AccountId: "acct-1", Category: category, Stage: "erase", Action: "delete", Generation: 1})
		if _, err := cjs.Publish(bg, erasurev1.TaskSubject(category), data); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]erasurev1.TaskOutcome{}
	for len(got) < 2 {
		m, err := reports.Next(jetstream.FetchMaxWait(20 * time.Second))
		if err != nil {
			t.Fatalf("no report within 20s (have %v): %v", got, err)
		}
		var r erasurev1.TaskReport
		if err := proto.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		got[r.GetJobId()] = r.GetOutcome()
		_ = m.Ack()
	}
	if got["job-ok"] != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || got["job-refused"] != erasurev1.TaskOutcome_TASK_OUTCOME_FAILED {
		t.Errorf("outcomes = %v", got)
	}
	dead, err := cjs.Stream(bg, erasurev1.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := dead.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("dead letters = %d, want the refused task's", n)
	}

	onc, _ := as(brokerauth.Erasectl)
	req, _ := proto.Marshal(&erasurev1.FootprintRequest{AccountIds: []string{"acct-1"}})
	m, err := onc.Request(erasurev1.FootprintSubject(category), req, 10*time.Second)
	if err != nil {
		t.Fatalf("footprint request as erasectl: %v", err)
	}
	var fp erasurev1.FootprintReply
	if err := proto.Unmarshal(m.Data, &fp); err != nil || fp.GetError() != "" || len(fp.GetAccounts()) != 1 {
		t.Fatalf("footprint reply %v, %v", &fp, err)
	}
	for _, e := range logs.FilterMessage("nats error").All() {
		t.Errorf("the broker refused the worker something: %v", e.ContextMap())
	}
}

func TestServiceConfigCredentials(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		wantAwait bool
		wantErr   string
	}{
		{name: "anonymous creates the topology", env: nil, wantAwait: false},
		{name: "with a seed it waits for the coordinator", env: map[string]string{"LETHE_NATS_NKEY_SEED_FILE": "/s/worker-logs.nk"}, wantAwait: true},
		{name: "explicitly", env: map[string]string{"LETHE_NATS_NKEY_SEED_FILE": "/s.nk", "LETHE_AWAIT_TOPOLOGY": "false"}, wantAwait: false},
		{name: "not a boolean", env: map[string]string{"LETHE_AWAIT_TOPOLOGY": "sometimes"}, wantErr: "LETHE_AWAIT_TOPOLOGY"},
		{name: "password without user", env: map[string]string{"LETHE_NATS_PASSWORD": "pw"}, wantErr: "LETHE_NATS_PASSWORD is set without LETHE_NATS_USER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c worker.ServiceConfig
			fs := flag.NewFlagSet("w", flag.ContinueOnError)
			c.RegisterFlags(fs, func(k string) string { return tt.env[k] }, "logs", "127.0.0.1:9102")
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.AwaitTopology != tt.wantAwait {
				t.Errorf("AwaitTopology = %v, want %v", c.AwaitTopology, tt.wantAwait)
			}
		})
	}
}
