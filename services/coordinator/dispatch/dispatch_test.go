package dispatch_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// crashAfterPublish publishes, then fails as a coordinator that crashed
// before it could mark the task dispatched.
type crashAfterPublish struct {
	jetstream.JetStream
	mu      sync.Mutex // the dispatcher publishes a round's tasks at once
	crashes int
}

func (c *crashAfterPublish) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := c.JetStream.PublishMsg(ctx, m, opts...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.crashes > 0 {
		c.crashes--
		return nil, errors.New("crashed after publish")
	}
	return ack, err
}

func setup(t *testing.T) (jetstream.JetStream, *jobstore.Store) {
	t.Helper()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	s := topology.DefaultSettings()
	s.Categories = []string{"contacts", "logs"}
	if err := topology.Ensure(context.Background(), js, s); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	return js, jobstore.New(rdb, prefix)
}

func TestRepublishAfterCrashIsDeduplicated(t *testing.T) {
	t.Parallel()
	js, store := setup(t)
	ctx := context.Background()
	now := time.Now()
	j, err := jobs.New("job-1", jobs.Request{AccountID: "acc-1", Origin: jobs.OriginAPI, RequestedBy: "privacy:t", Reason: "r"},
		[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}, {Category: "logs", Stage: "erase", Action: "delete"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	pub := &crashAfterPublish{JetStream: js, crashes: 2}
	d := dispatch.New(store, pub, lifecycle.NewRecorder(js), zaptest.NewLogger(t), nil, dispatch.Options{})
	for i := 0; i < 10; i++ {
		if _, err := d.DispatchDue(ctx); err == nil {
			break
		}
	}
	got, err := store.Get(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range got.Tasks {
		if tk.Status != jobs.TaskDispatched {
			t.Errorf("task %s is %s, want dispatched", tk.Key(), tk.Status)
		}
	}
	st, _ := js.Stream(ctx, erasurev1.TasksStream)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 2 {
		t.Fatalf("%d task messages in the queue after re-publishing, want 2 (one per category)", info.State.Msgs)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var task erasurev1.ErasureTask
	if err := proto.Unmarshal(m.Data, &task); err != nil || task.GetJobId() != "job-1" || task.GetAccountId() != "acc-1" || task.GetGeneration() != 1 || !task.GetDeadline().IsValid() {
		t.Errorf("task message = %v (%v)", &task, err)
	}
	if n, _ := d.DispatchDue(ctx); n != 0 {
		t.Errorf("%d tasks due after dispatching all, want 0", n)
	}
}

func TestRunSleepsUntilDueAndWakes(t *testing.T) {
	t.Parallel()
	js, store := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := dispatch.New(store, js, lifecycle.NewRecorder(js), zaptest.NewLogger(t), nil, dispatch.Options{MaxSleep: time.Minute})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	time.Sleep(100 * time.Millisecond) // Run is now asleep with nothing due
	j, _ := jobs.New("job-2", jobs.Request{AccountID: "acc-2", Origin: jobs.OriginAPI, RequestedBy: "privacy:t", Reason: "r"},
		[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}}, time.Now())
	if _, _, err := store.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := store.Get(ctx, "job-2")
		if got.Tasks[0].Status == jobs.TaskDispatched {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Wake did not make the sleeping dispatcher publish (its max sleep is a minute)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
