package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

func lifecycleStream(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	for _, cfg := range topology.DefaultSettings().Streams() {
		if cfg.Name == erasurev1.LifecycleStream {
			if _, err := js.CreateOrUpdateStream(context.Background(), cfg); err != nil {
				tb.Fatal(err)
			}
			return
		}
	}
	tb.Fatal("the topology has no lifecycle stream")
}

func keys(tb testing.TB) *audit.KeyRing {
	tb.Helper()
	k, err := audit.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	r, err := audit.NewKeyRing(k)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func event(job string, n int64) *erasurev1.LifecycleEvent {
	return &erasurev1.LifecycleEvent{
		EventId: fmt.Sprintf("%s:%d:dispatched", job, n),
		Type:    erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED,
		JobId:   job,
		Actor:   "coordinator",
	}
}

// TestDuplicateDoesNotMoveTheChain records an event twice, with other
// events before and after it in the same batches.
func TestDuplicateDoesNotMoveTheChain(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	lifecycleStream(t, js)
	ring := keys(t)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(ring.Signing()))
	for _, n := range []int64{1, 2, 1, 3, 2} {
		if err := rec.Record(t.Context(), event("job-d", n)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for n := range int64(20) {
		wg.Go(func() {
			if err := rec.Record(t.Context(), event("job-d", n%10)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st := rec.ChainStats()
	if st.Stored != 10 || st.Duplicates != 15 {
		t.Errorf("stats %+v, want 10 stored and 15 duplicates", st)
	}
	r, err := audit.Walk(t.Context(), js, ring, audit.WalkOptions{}, nil)
	if err != nil || !r.OK || r.Checked != 10 || r.Verified != 10 {
		t.Fatalf("report %+v, %v", r, err)
	}
}

// TestStreamWithoutAtomicBatches: a lifecycle stream created before the
// chain (no atomic publish) still takes the events, pipelined, and
// topology.Ensure turns atomic publish on for it.
func TestStreamWithoutAtomicBatches(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	var cfg jetstream.StreamConfig
	for _, c := range topology.DefaultSettings().Streams() {
		if c.Name == erasurev1.LifecycleStream {
			cfg = c
		}
	}
	cfg.AllowAtomicPublish = false
	if _, err := js.CreateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	ring := keys(t)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(ring.Signing()))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range int64(10) {
				if err := rec.Record(t.Context(), event(fmt.Sprintf("job-%d", g), n)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if r, err := audit.Walk(t.Context(), js, ring, audit.WalkOptions{}, nil); err != nil || !r.OK || r.Verified != 80 {
		t.Fatalf("report %+v, %v", r, err)
	}
	if err := topology.Ensure(t.Context(), js, topology.Settings{Categories: []string{"contacts"}}); err != nil {
		t.Fatalf("update the stream: %v", err)
	}
	s, err := js.Stream(t.Context(), erasurev1.LifecycleStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || !info.Config.AllowAtomicPublish {
		t.Fatalf("atomic publish not turned on: %v", err)
	}
}

// TestAuditKeyNeedsChainPublisher: a publisher that is not a ChainPublisher is
// refused, not written to unsigned.
func TestAuditKeyNeedsChainPublisher(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	lifecycleStream(t, js)
	rec := lifecycle.NewRecorder(struct{ lifecycle.Publisher }{js}, lifecycle.WithAuditKey(keys(t).Signing()))
	err := rec.Record(t.Context(), event("job-p", 1))
	if err == nil || !strings.Contains(err.Error(), "audit key") {
		t.Fatalf("Record = %v, want an error about the audit key", err)
	}
	if s, _ := js.Stream(t.Context(), erasurev1.LifecycleStream); s != nil {
		if info, _ := s.Info(t.Context()); info.State.Msgs != 0 {
			t.Errorf("%d messages stored", info.State.Msgs)
		}
	}
}

// TestCallerGoneLeavesTheRest cancels the context of callers while others
// keep recording: the others' events are all stored and the chain holds.
func TestCallerGoneLeavesTheRest(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	lifecycleStream(t, js)
	ring := keys(t)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(ring.Signing()), lifecycle.WithMaxBatch(8))
	var wg sync.WaitGroup
	var kept atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for n := range int64(50) {
				ctx := t.Context()
				if g%2 == 1 && n%5 == 0 {
					c, cancel := context.WithCancel(ctx)
					cancel()
					ctx = c
				}
				err := rec.Record(ctx, event(fmt.Sprintf("job-%d", g), n))
				switch {
				case err == nil:
					kept.Add(1)
				case !errors.Is(err, context.Canceled):
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	r, err := audit.Walk(t.Context(), js, ring, audit.WalkOptions{}, nil)
	if err != nil || !r.OK || r.Verified != r.Checked || r.Checked < uint64(kept.Load()) {
		t.Fatalf("report %+v (%d recorded), %v", r, kept.Load(), err)
	}
}

// BenchmarkRecord measures lifecycle events recorded per second: unsigned
// (as before the audit chain) and signed, by one recorder and by two on
// their own connections (two coordinators) appending to the same chain,
// against one embedded nats-server (R1: signed events go pipelined, two
// in flight) and a cluster of three (R3: atomic batches; "serial" is the
// stream without atomic publish, pipelined as on R1). 64 goroutines record through
// each recorder, as the report intake and dispatcher do under load.
func BenchmarkRecord(b *testing.B) {
	for _, bc := range []struct {
		name      string
		replicas  int
		recorders int
		signed    bool
		serial    bool // the stream takes no atomic batches
	}{
		{"R1/unsigned/recorders=1", 1, 1, false, false},
		{"R1/signed/recorders=1", 1, 1, true, false},
		{"R1/signed/recorders=2", 1, 2, true, false},
		{"R3/unsigned/recorders=1", 3, 1, false, false},
		{"R3/signed/recorders=1", 3, 1, true, false},
		{"R3/signed/recorders=2", 3, 2, true, false},
		{"R3/signed-serial/recorders=1", 3, 1, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			urls := []string{testenv.StartNATS(b).URL}
			if bc.replicas == 3 {
				urls = startCluster(b)
			}
			ring := keys(b)
			var recs []*lifecycle.Recorder
			var js0 jetstream.JetStream
			for i := range bc.recorders {
				nc, err := nats.Connect(urls[i%len(urls)])
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(nc.Close)
				js, err := jetstream.New(nc)
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					js0 = js
					s := topology.DefaultSettings()
					s.Replicas = bc.replicas
					for _, cfg := range s.Streams() {
						if cfg.Name == erasurev1.LifecycleStream {
							cfg.AllowAtomicPublish = !bc.serial
							if _, err := js.CreateOrUpdateStream(context.Background(), cfg); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				var opts []lifecycle.Option
				if bc.signed {
					opts = append(opts, lifecycle.WithAuditKey(ring.Signing()))
				}
				recs = append(recs, lifecycle.NewRecorder(js, opts...))
			}
			const callers = 64
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for _, rec := range recs {
				for g := range callers {
					wg.Go(func() {
						for {
							n := next.Add(1)
							if n > int64(b.N) {
								return
							}
							if err := rec.Record(context.Background(), event(fmt.Sprintf("job-%d", g), n)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			// What each event costs in the stream, headers included.
			if s, err := js0.Stream(context.Background(), erasurev1.LifecycleStream); err == nil {
				if info, err := s.Info(context.Background()); err == nil && info.State.Msgs > 0 {
					b.ReportMetric(float64(info.State.Bytes)/float64(info.State.Msgs), "stored-B/event")
				}
			}
			var st lifecycle.ChainStats
			for _, rec := range recs {
				s := rec.ChainStats()
				st.Stored += s.Stored
				st.Batches += s.Batches
				st.Conflicts += s.Conflicts
			}
			if bc.signed && st.Batches > 0 {
				b.ReportMetric(float64(st.Stored)/float64(st.Batches), "events/batch")
				b.ReportMetric(float64(st.Conflicts)/float64(b.N), "conflicts/event")
			}
		})
	}
}

// startCluster starts three embedded nats-servers with JetStream as one
// cluster on loopback and returns their client URLs once JetStream
// answers.
func startCluster(tb testing.TB) []string {
	tb.Helper()
	ports := make([]int, 3)
	var routes []*url.URL
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var nodes []*server.Server
	for i := range ports {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "lethe-bench", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			tb.Fatal(err)
		}
		go s.Start()
		tb.Cleanup(s.Shutdown)
		nodes = append(nodes, s)
	}
	var urls []string
	for _, s := range nodes {
		if !s.ReadyForConnections(30 * time.Second) {
			tb.Fatal("cluster node not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(urls[0])
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return urls
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the cluster's JetStream did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
