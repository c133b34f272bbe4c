package brokerauth_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/brokerauth/authtest"
	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// client is one identity's connection, with the permission errors the
// server sent it.
type client struct {
	identity string
	nc       *nats.Conn
	js       jetstream.JetStream
	mu       sync.Mutex
	denied   []string
	signal   chan struct{}
}

func connect(t *testing.T, srv *authtest.Server, identity string) *client {
	t.Helper()
	c := &client{identity: identity, signal: make(chan struct{}, 100)}
	opts, err := srv.Auth(identity).Options(identity)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.PermissionErrOnSubscribe(true), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			c.mu.Lock()
			c.denied = append(c.denied, err.Error())
			c.mu.Unlock()
			c.signal <- struct{}{}
		}
	}))
	nc, js, err := natsconn.Connect(srv.URL, "test-"+identity, zaptest.NewLogger(t), opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", identity, err)
	}
	t.Cleanup(nc.Close)
	c.nc, c.js = nc, js
	return c
}

// wasDenied reports whether the server refused an operation on subject
// ("Publish to" or "Subscription to").
func (c *client) wasDenied(op, subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := fmt.Sprintf("%s %q", op, subject)
	for _, d := range c.denied {
		if strings.Contains(d, want) {
			return true
		}
	}
	return false
}

// outcome is what the broker did with an attempt.
type outcome string

const (
	allowed outcome = "allowed"
	denied  outcome = "denied"
)

// request publishes data to subject with a reply inbox and waits for
// whichever comes first: a reply (allowed) or the server's permission
// error for the subject (denied). Neither within 10 s fails the test; the
// bound is not the assertion, the server always answers one way or the
// other.
func (c *client) request(t *testing.T, subject string, data []byte, hdr nats.Header) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	replied := make(chan error, 1)
	go func() {
		m := &nats.Msg{Subject: subject, Data: data, Header: hdr}
		_, err := c.nc.RequestMsgWithContext(ctx, m)
		replied <- err
	}()
	for {
		if c.wasDenied("Publish to", subject) {
			cancel()
			return denied
		}
		select {
		case err := <-replied:
			if err == nil || errors.Is(err, nats.ErrNoResponders) {
				// No responders still means the publish went through.
				if c.wasDenied("Publish to", subject) {
					return denied
				}
				return allowed
			}
			if c.wasDenied("Publish to", subject) {
				return denied
			}
			t.Fatalf("%s: request to %s: %v", c.identity, subject, err)
		case <-c.signal:
		}
	}
}

// subscribe subscribes to subject and waits for the server's verdict: the
// permission error, or the round trip of a flush after which a refusal
// would have arrived (the server answers SUB before PING).
func (c *client) subscribe(t *testing.T, subject string) outcome {
	t.Helper()
	sub, err := c.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("%s: subscribe %s: %v", c.identity, subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The read loop records the error on the subscription before it
	// processes the flush's PONG; NextMsg returns it
	// (PermissionErrOnSubscribe).
	if _, err := sub.NextMsg(time.Millisecond); errors.Is(err, nats.ErrPermissionViolation) || c.wasDenied("Subscription to", subject) {
		return denied
	}
	return allowed
}

func taskData(t *testing.T, category string) []byte {
	t.Helper()
	b, err := proto.Marshal(&erasurev1.ErasureTask{JobId: "job-perm", AccountId: "acct-perm", Category: category, Stage: "erase", Action: "delete", Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reportData(t *testing.T, category string) []byte {
	t.Helper()
	b, err := proto.Marshal(&erasurev1.TaskReport{JobId: "job-perm", AccountId: "acct-perm", Category: category, Stage: "erase", Generation: 1, Attempt: 1, Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBrokerPermissions runs every identity against every action that
// matters and prints the matrix: each worker consumes its own queue and
// publishes its own reports and dead letters, and nothing else; only the
// coordinator publishes tasks and lifecycle events and manages streams;
// the dashboard publishes only the account-deletion event.
func TestBrokerPermissions(t *testing.T) {
	categories := topology.DefaultSettings().Categories
	srv := authtest.Start(t, categories)
	ctx := context.Background()

	coord := connect(t, srv, brokerauth.Coordinator)
	if err := topology.Ensure(ctx, coord.js, topology.Settings{Categories: categories}); err != nil {
		t.Fatalf("the coordinator's credentials cannot create the topology: %v", err)
	}

	own := erasurev1.CategoryContacts
	nextOf := func(cat string) string {
		return "$JS.API.CONSUMER.MSG.NEXT." + erasurev1.TasksStream + "." + erasurev1.WorkerConsumer(cat)
	}
	pull := []byte(`{"batch":1,"no_wait":true}`)

	type attempt struct {
		who  string
		what string
		want outcome
		// do returns what the broker did.
		do func(t *testing.T, c *client) outcome
	}
	publish := func(subject string, data func(*testing.T) []byte) func(*testing.T, *client) outcome {
		return func(t *testing.T, c *client) outcome { return c.request(t, subject, data(t), nil) }
	}
	task := func(cat string) func(*testing.T) []byte { return func(t *testing.T) []byte { return taskData(t, cat) } }
	report := func(cat string) func(*testing.T) []byte {
		return func(t *testing.T) []byte { return reportData(t, cat) }
	}
	empty := func(*testing.T) []byte { return nil }
	lifecycle := erasurev1.LifecycleSubject("job-perm")

	// workerRows are what a category's worker may and may not do; other
	// is another category.
	workerRows := func(own, other string) []attempt {
		workerID := brokerauth.Worker(own)
		return []attempt{
			{workerID, "consume its own queue (pull, process, ack)", allowed, func(t *testing.T, c *client) outcome {
				cons, err := c.js.Consumer(ctx, erasurev1.TasksStream, erasurev1.WorkerConsumer(own))
				if err != nil {
					t.Fatalf("look up own consumer: %v", err)
				}
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				n := 0
				for m := range batch.Messages() {
					if err := m.InProgress(); err != nil {
						t.Fatal(err)
					}
					if err := m.DoubleAck(ctx); err != nil {
						t.Fatalf("ack: %v", err)
					}
					n++
				}
				if batch.Error() != nil || n != 1 {
					t.Fatalf("fetched %d tasks (%v), want the one the coordinator published", n, batch.Error())
				}
				return allowed
			}},
			{workerID, "publish its own report", allowed, publish(erasurev1.ReportSubject(own), report(own))},
			{workerID, "publish its own dead letter", allowed, publish(erasurev1.DeadLetterSubject(own), task(own))},
			{workerID, "publish a task", denied, publish(erasurev1.TaskSubject(own), task(own))},
			{workerID, "publish a lifecycle event", denied, publish(lifecycle, empty)},
			{workerID, "publish another category's report", denied, publish(erasurev1.ReportSubject(other), report(other))},
			{workerID, "pull from another category's consumer", denied, func(t *testing.T, c *client) outcome { return c.request(t, nextOf(other), pull, nil) }},
			{workerID, "look up another category's consumer", denied, publish("$JS.API.CONSUMER.INFO."+erasurev1.TasksStream+"."+erasurev1.WorkerConsumer(other), empty)},
			{workerID, "subscribe to another category's task subject", denied, func(t *testing.T, c *client) outcome { return c.subscribe(t, erasurev1.TaskSubject(other)) }},
			{workerID, "subscribe to another identity's inbox", denied, func(t *testing.T, c *client) outcome {
				return c.subscribe(t, brokerauth.InboxPrefix(brokerauth.Worker(other))+".>")
			}},
			{workerID, "delete a stream", denied, publish("$JS.API.STREAM.DELETE."+erasurev1.TasksStream, empty)},
			{workerID, "create a consumer", denied, publish("$JS.API.CONSUMER.CREATE."+erasurev1.TasksStream, empty)},
			{workerID, "purge a stream", denied, publish("$JS.API.STREAM.PURGE."+erasurev1.TasksStream, empty)},
			{workerID, "answer a footprint request of erasectl", allowed, func(t *testing.T, c *client) outcome {
				sub, err := c.nc.QueueSubscribe(erasurev1.FootprintSubject(own), erasurev1.WorkerConsumer(own), func(m *nats.Msg) {
					_ = m.Respond([]byte("answer"))
				})
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = sub.Unsubscribe() }()
				if err := c.nc.Flush(); err != nil {
					t.Fatal(err)
				}
				ops := connect(t, srv, brokerauth.Erasectl)
				m, err := ops.nc.Request(erasurev1.FootprintSubject(own), nil, 10*time.Second)
				if err != nil || string(m.Data) != "answer" || c.wasDenied("Subscription to", erasurev1.FootprintSubject(own)) {
					t.Fatalf("footprint request: %v", err)
				}
				return allowed
			}},
			{workerID, "answer another category's footprint requests", denied, func(t *testing.T, c *client) outcome { return c.subscribe(t, erasurev1.FootprintSubject(other)) }},
		}
	}

	tests := []attempt{
		{brokerauth.Coordinator, "publish a task", allowed, publish(erasurev1.TaskSubject(own), task(own))},
		{brokerauth.Coordinator, "publish a lifecycle event", allowed, publish(lifecycle, empty)},
		{brokerauth.Coordinator, "read stream info", allowed, publish("$JS.API.STREAM.INFO."+erasurev1.TasksStream, empty)},
		{brokerauth.Coordinator, "publish a report", denied, publish(erasurev1.ReportSubject(own), report(own))},

		{brokerauth.Dashboard, "publish the account-deletion event", allowed, publish(erasurev1.AccountDeletedSubject, empty)},
		{brokerauth.Dashboard, "publish a task", denied, publish(erasurev1.TaskSubject(own), task(own))},
		{brokerauth.Dashboard, "publish a report", denied, publish(erasurev1.ReportSubject(own), report(own))},
		{brokerauth.Dashboard, "publish a lifecycle event", denied, publish(lifecycle, empty)},
		{brokerauth.Dashboard, "pull from a worker's consumer", denied, func(t *testing.T, c *client) outcome { return c.request(t, nextOf(own), pull, nil) }},
		{brokerauth.Dashboard, "read stream info", denied, publish("$JS.API.STREAM.INFO."+erasurev1.TasksStream, empty)},
		{brokerauth.Dashboard, "subscribe to the lifecycle events", denied, func(t *testing.T, c *client) outcome { return c.subscribe(t, erasurev1.LifecycleSubjectPrefix+">") }},

		{brokerauth.Erasectl, "publish the account-deletion event", allowed, publish(erasurev1.AccountDeletedSubject, empty)},
		{brokerauth.Erasectl, "publish a task", denied, publish(erasurev1.TaskSubject(own), task(own))},
		{brokerauth.Erasectl, "delete a stream", denied, publish("$JS.API.STREAM.DELETE."+erasurev1.TasksStream, empty)},
		{brokerauth.Erasectl, "read the lifecycle stream (audit walk)", allowed, func(t *testing.T, c *client) outcome {
			// What audit.Walk does: stream info, then an ordered consumer.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.js.Stream(ctx, erasurev1.LifecycleStream); err != nil {
				return denied
			}
			cons, err := c.js.OrderedConsumer(ctx, erasurev1.LifecycleStream, jetstream.OrderedConsumerConfig{})
			if err != nil {
				return denied
			}
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return denied
			}
			n := 0
			for range batch.Messages() {
				n++
			}
			if n != 1 || batch.Error() != nil {
				return denied
			}
			return allowed
		}},
		{brokerauth.Erasectl, "publish a lifecycle event", denied, publish(lifecycle, empty)},
		{brokerauth.Erasectl, "purge the lifecycle stream", denied, publish("$JS.API.STREAM.PURGE."+erasurev1.LifecycleStream, empty)},
	}

	for i, cat := range categories {
		tests = append(tests, workerRows(cat, categories[(i+1)%len(categories)])...)
		// Its "consume" row needs a task in its queue.
		if o := coord.request(t, erasurev1.TaskSubject(cat), taskData(t, cat), nats.Header{jetstream.MsgIDHeader: []string{"perm-task-" + cat}}); o != allowed {
			t.Fatalf("coordinator publishing a task: %s", o)
		}
	}

	var matrix strings.Builder
	fmt.Fprintf(&matrix, "%-16s %-48s %-8s %s\n", "identity", "action", "want", "got")
	for _, tt := range tests {
		t.Run(tt.who+"/"+tt.what, func(t *testing.T) {
			c := coord
			if tt.who != brokerauth.Coordinator {
				c = connect(t, srv, tt.who)
			}
			got := tt.do(t, c)
			fmt.Fprintf(&matrix, "%-16s %-48s %-8s %s\n", tt.who, tt.what, tt.want, got)
			if got != tt.want {
				t.Errorf("%s may %s: got %s, want %s", tt.who, tt.what, got, tt.want)
			}
		})
	}
	t.Logf("broker permissions:\n%s", matrix.String())

	for name, auth := range map[string]natsconn.Auth{
		"no credentials": {},
		"an unknown key": unknownKey(t),
	} {
		opts, err := auth.Options("test")
		if err != nil {
			t.Fatal(err)
		}
		nc, _, err := natsconn.Connect(srv.URL, "test", zaptest.NewLogger(t), opts...)
		if err == nil {
			nc.Close()
			t.Errorf("a connection with %s was accepted", name)
		} else if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), "refused this service's credentials") {
			t.Errorf("connecting with %s: %v, want an authorization error that says what to check", name, err)
		}
	}

	// Nothing the denied attempts sent reached a stream: the tasks stream
	// holds the coordinator's second task (the first was consumed and
	// acked), the lifecycle stream only the coordinator's event.
	for stream, want := range map[string]uint64{erasurev1.TasksStream: 1, erasurev1.LifecycleStream: 1} {
		st, err := coord.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if n := st.CachedInfo().State.Msgs; n != want {
			t.Errorf("stream %s holds %d messages, want %d", stream, n, want)
		}
	}
}

// unknownKey is a valid seed the server does not know.
func unknownKey(t *testing.T) natsconn.Auth {
	t.Helper()
	dir := t.TempDir()
	if _, err := brokerauth.Keys(dir, []string{"stranger"}); err != nil {
		t.Fatal(err)
	}
	return natsconn.Auth{NKeySeedFile: filepath.Join(dir, brokerauth.SeedFile("stranger"))}
}
