// Package stripemock runs the real stripe-mock (github.com/stripe/stripe-mock,
// Stripe's own mock of its HTTP API, built from its OpenAPI specification)
// for tests of the billing worker. Each Start launches one process on free
// loopback ports and stops it when the test ends.
//
// stripe-mock is stateless: it validates requests against the API
// specification and answers with fixtures, so every DELETE of a well-formed
// customer id succeeds, and it cannot produce 404s, 429s or 5xx. Tests of
// those answers use an httptest.Server speaking Stripe's documented error
// format instead.
package stripemock

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// APIKey is a test-mode key. stripe-mock accepts sk_test_ followed by
// letters and digits only.
const APIKey = "sk_test_LetheStripeMock"

// EnvBinary names the stripe-mock binary to run (scripts/test sets it).
const EnvBinary = "LETHE_STRIPE_MOCK_BIN"

// Server is a running stripe-mock.
type Server struct {
	// URL is the base URL of its plain-HTTP listener, http://127.0.0.1:PORT.
	URL string
}

// Binary finds the stripe-mock binary: $LETHE_STRIPE_MOCK_BIN, else
// stripe-mock on PATH, else .lethe/bin/stripe-mock in the repository (the
// directory of go.work above the working directory), where scripts/test
// builds it.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", errors.New(EnvBinary + " names no file")
		}
		return p, nil
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			p := filepath.Join(dir, ".lethe", "bin", "stripe-mock")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("stripe-mock not found (not in " + EnvBinary + ", on PATH, or in .lethe/bin)")
}

// Start runs stripe-mock on free loopback ports, waits until it answers
// and stops it when the test ends. It fails the test when the binary is
// missing or the server does not come up within 30 seconds.
//
// Both listeners are given loopback addresses: stripe-mock listens on
// every interface for any listener whose address is left out.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("%v: run scripts/test, which builds it, or set %s", err, EnvBinary)
	}
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	cmd.SysProcAttr = sysProcAttr()
	out := &addrWriter{addr: make(chan string, 1)}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	var base string
	select {
	case a := <-out.addr:
		base = "http://" + a
	case <-exited:
		t.Fatalf("stripe-mock exited at start:\n%s", out.String())
	case <-deadline.C:
		t.Fatalf("stripe-mock printed no HTTP address within 30s:\n%s", out.String())
	}
	for {
		if answers(base) {
			return &Server{URL: base}
		}
		select {
		case <-exited:
			t.Fatalf("stripe-mock exited at start:\n%s", out.String())
		case <-deadline.C:
			t.Fatalf("stripe-mock at %s did not answer within 30s", base)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// answers reports whether stripe-mock at base answers an authenticated
// request.
func answers(base string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/customers", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// addrWriter keeps stripe-mock's output for error messages and sends the
// address of the HTTP listener, once, when the line that names it is
// complete.
type addrWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sent bool
	addr chan string
}

func (w *addrWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.sent {
		return len(p), nil
	}
	const prefix = "Listening for HTTP at address: "
	for line := range strings.Lines(w.buf.String()) {
		if a, ok := strings.CutPrefix(line, prefix); ok && strings.HasSuffix(a, "\n") {
			w.addr <- strings.TrimSpace(a)
			w.sent = true
			break
		}
	}
	return len(p), nil
}

func (w *addrWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
