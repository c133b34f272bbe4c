package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster starts three embedded JetStream servers routed to one
// another and returns a JetStream client once the cluster has a meta
// leader. The servers are shut down when the test ends.
func startCluster(t *testing.T) jetstream.JetStream {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	var routes []string
	for _, l := range ls {
		_ = l.Close()
	}
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var first *server.Server
	for i, p := range ports {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("s%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "topology-test", Host: "127.0.0.1", Port: p},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(srv.Shutdown)
		if !srv.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server s%d not ready", i+1)
		}
		if first == nil {
			first = srv
		}
	}
	nc, err := nats.Connect(first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return js
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster has no JetStream meta leader: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A cluster that cannot place an asset answers "no suitable peers for
// placement" (here: a placement tag no server has; right after start-up:
// servers not heard from yet). whenPlaced retries that answer, and only
// that one, until the asset is placed or ctx ends.
func TestWhenPlacedRetriesUntilTheClusterCanPlace(t *testing.T) {
	t.Parallel()
	js := startCluster(t)
	nowhere := func(name string) jetstream.StreamConfig {
		return jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name)}, Replicas: 3,
			Placement: &jetstream.Placement{Tags: []string{"nowhere"}}}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := whenPlaced(ctx, func() error {
		_, err := js.CreateStream(context.Background(), nowhere("NEVER"))
		return err
	})
	cancel()
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeNoSuitablePeers || !strings.Contains(err.Error(), "joined the cluster") {
		t.Errorf("whenPlaced on an unplaceable stream = %v, want the server's no-suitable-peers error and a hint", err)
	}

	// Placeable from the third call on, as a cluster becomes once every
	// server was heard from.
	calls := 0
	err = whenPlaced(context.Background(), func() error {
		calls++
		cfg := nowhere("LATER")
		if calls >= 3 {
			cfg.Placement = nil
		}
		_, err := js.CreateStream(context.Background(), cfg)
		return err
	})
	if err != nil || calls != 3 {
		t.Errorf("whenPlaced = %v after %d calls, want success on the third", err, calls)
	}

	// Any other error is returned at once.
	calls = 0
	err = whenPlaced(context.Background(), func() error {
		calls++
		_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "BAD", Subjects: []string{"later"}, Replicas: 3})
		return err
	})
	if err == nil || calls != 1 {
		t.Errorf("whenPlaced with an overlapping subject = %v after %d calls, want its error after one call", err, calls)
	}
}
