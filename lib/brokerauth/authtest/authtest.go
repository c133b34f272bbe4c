// Package authtest starts an embedded nats-server with JetStream that
// enforces Lethe's broker permissions exactly as deployed: the
// configuration is brokerauth.Conf's text, loaded through nats-server's own
// configuration parser, with a fresh nkey per identity. Tests connect as
// any identity with the Auth it returns. Import it from _test.go files
// only.
package authtest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/natsconn"
)

// Server is the running embedded server.
type Server struct {
	Server *server.Server
	URL    string
	// Dir holds the configuration, the seeds and the JetStream store.
	Dir  string
	opts *server.Options
}

// Start renders the permissions for categories, generates a key for every
// identity, and starts the server on a random loopback port. It is shut
// down when the test ends. extra users are added to the deployed ones (a
// test's own observer, say); they change nobody else's permissions.
func Start(t testing.TB, categories []string, extra ...brokerauth.User) *Server {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "auth")
	users := append(brokerauth.Users(categories), extra...)
	var ids []string
	for _, u := range users {
		ids = append(ids, u.Identity)
	}
	if _, err := brokerauth.Keys(keys, ids); err != nil {
		t.Fatalf("generate nkeys: %v", err)
	}
	if err := os.WriteFile(filepath.Join(keys, brokerauth.ConfFile), []byte(brokerauth.Render(users)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A relative include: nats-server resolves it from the including
	// file's directory; auth.conf includes nkeys.conf beside it.
	main := fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
include "auth/%s"
`, filepath.Join(dir, "js"), brokerauth.ConfFile)
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server rejects the rendered configuration: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s := &Server{Dir: dir, opts: opts}
	s.start(t)
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		t.Fatalf("create embedded nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded nats server did not become ready within 10s")
	}
	s.Server, s.URL = srv, srv.ClientURL()
	if addr, ok := srv.Addr().(*net.TCPAddr); ok {
		s.opts.Port = addr.Port
	}
}

// Shutdown stops the server.
func (s *Server) Shutdown() {
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
}

// Auth is what a process of the identity configures: its seed file.
func (s *Server) Auth(identity string) natsconn.Auth {
	return natsconn.Auth{NKeySeedFile: filepath.Join(s.Dir, "auth", brokerauth.SeedFile(identity))}
}
