// Package testenv gives integration tests the real services they run
// against: an embedded NATS server with JetStream in a temporary directory,
// a Redis key prefix of their own on the shared Redis, and a temporary
// PostgreSQL database. Every helper takes t, isolates the test from every
// other package running in parallel, and cleans up with t.Cleanup.
//
// Redis and PostgreSQL are reached through LETHE_TEST_REDIS_URL and
// LETHE_TEST_POSTGRES_URL (defaults: the local servers). scripts/test starts
// them when they are not running.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// Default addresses of the local test services.
const (
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

// NATSServer is an embedded nats-server with JetStream, listening on a random
// loopback port.
type NATSServer struct {
	Server *server.Server
	URL    string
	opts   *server.Options
}

// StartNATS starts an embedded NATS server with JetStream storing in a
// temporary directory, and shuts it down when the test ends.
func StartNATS(t testing.TB) *NATSServer {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	s := &NATSServer{opts: opts}
	s.start(t)
	t.Cleanup(func() { s.Shutdown() })
	return s
}

func (s *NATSServer) start(t testing.TB) {
	t.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		t.Fatalf("create embedded nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatalf("embedded nats server did not become ready within 10s")
	}
	s.Server = srv
	s.URL = srv.ClientURL()
	// Keep the port on restart so that clients reconnect to it.
	if addr, ok := srv.Addr().(*net.TCPAddr); ok {
		s.opts.Port = addr.Port
	}
}

// Shutdown stops the server; Restart starts it again on the same port and
// store, as a crashed and restarted broker would come back.
func (s *NATSServer) Shutdown() {
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
}

// Restart starts the server again after Shutdown with the same port and
// store directory.
func (s *NATSServer) Restart(t testing.TB) {
	t.Helper()
	s.start(t)
}

// Connect opens a client connection that is closed when the test ends.
func (s *NATSServer) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to embedded nats %s: %v", s.URL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("create jetstream context: %v", err)
	}
	return nc, js
}

// Redis returns a client of the test Redis and a key prefix unique to this
// test. Every key under the prefix is deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	raw := envOr("LETHE_TEST_REDIS_URL", DefaultRedisURL)
	opts, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("parse LETHE_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		t.Fatalf("reach test redis at %s: %v (start it with scripts/test, or set LETHE_TEST_REDIS_URL)", opts.Addr, err)
	}
	prefix := "lethe-test:" + randomID() + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			rdb.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// Postgres creates a temporary database on the test PostgreSQL server and
// returns its connection URL. The database is dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	raw := envOr("LETHE_TEST_POSTGRES_URL", DefaultPostgresURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatalf("reach test postgres: %v (start it with scripts/test, or set LETHE_TEST_POSTGRES_URL)", err)
	}
	defer admin.Close(context.Background())
	name := "lethe_test_" + randomID()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create temporary database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, raw)
		if err != nil {
			t.Logf("drop temporary database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop temporary database %s: %v", name, err)
		}
	})
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse LETHE_TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the process instead
	return strings.ToLower(hex.EncodeToString(b))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
