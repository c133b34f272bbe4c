package billingstore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
	"github.com/lethe-privacy/lethe/services/billing/stripemock"
)

// openStore opens a store on dsn and closes it when the test ends.
func openStore(t testing.TB, dsn string, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// newStore gives the test a migrated store on a database of its own.
func newStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s := openStore(t, testenv.Postgres(t), opts...)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// migratedDatabase creates a temporary database with the store's schema
// and returns its DSN.
func migratedDatabase(t testing.TB) string {
	t.Helper()
	dsn := testenv.Postgres(t)
	s := openStore(t, dsn)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return dsn
}

// account returns an account id of the running test: tests that share a
// database use accounts of their own.
func account(t testing.TB, n int) string {
	return strings.ReplaceAll(t.Name(), "/", ".") + "." + strconv.Itoa(n)
}

// resetAccount deletes every row of the account.
func resetAccount(t testing.TB, s *Store, account string) {
	t.Helper()
	for _, q := range []string{`DELETE FROM invoices WHERE account_id = $1`, `DELETE FROM customers WHERE account_id = $1`} {
		if _, err := s.pool.Exec(context.Background(), q, account); err != nil {
			t.Fatalf("reset account: %v", err)
		}
	}
}

// at returns a clock that always says the RFC 3339 instant ts.
func at(t testing.TB, ts string) func() time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		t.Fatalf("parse %q: %v", ts, err)
	}
	return func() time.Time { return tm }
}

// settableClock is a clock a test moves.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settableClock) set(t testing.TB, ts string) {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		t.Fatalf("parse %q: %v", ts, err)
	}
	c.mu.Lock()
	c.t = tm
	c.mu.Unlock()
}

// stripeClient is a client of the Stripe API at base.
func stripeClient(t testing.TB, base string) *stripeapi.Client {
	t.Helper()
	c, err := stripeapi.New(stripeapi.Config{BaseURL: base, APIKey: redact.New(stripemock.APIKey), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("stripeapi.New: %v", err)
	}
	return c
}

// useStripe gives s a Stripe client of base after the test seeded it
// without one (invented customer ids), for fake Stripes that cannot create
// customers.
func useStripe(t testing.TB, s *Store, base string) {
	t.Helper()
	s.stripe = stripeClient(t, base)
}

func footprint(t testing.TB, s *Store, id string) worker.Footprint {
	t.Helper()
	fps, err := s.Footprint(context.Background(), []string{id})
	if err != nil {
		t.Fatalf("Footprint %s: %v", id, err)
	}
	return fps[0]
}

func task(account, action string) worker.Task {
	return worker.Task{JobID: "job-1", AccountID: account, Category: "billing", Stage: "erase", Action: action, Generation: 1, Attempt: 1}
}

func purge(ctx context.Context, s *Store, account string) (worker.Result, error) {
	return s.Purge(ctx, task(account, ActionPseudonymise))
}

func seed(t testing.TB, s *Store, account string, opts SeedOptions) SeedResult {
	t.Helper()
	res, err := s.Seed(context.Background(), account, opts, nil)
	if err != nil {
		t.Fatalf("Seed %s: %v", account, err)
	}
	return res
}

// faultyStripe stands in front of a Stripe API (stripe-mock, or a fake)
// and fails the first failures DELETE requests with status (0: drops the
// connection). It records the Idempotency-Key of every DELETE.
type faultyStripe struct {
	*httptest.Server
	mu       sync.Mutex
	failures int
	status   int
	keys     []string
}

func newFaultyStripe(t testing.TB, upstream string, failures, status int) *faultyStripe {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	f := &faultyStripe{failures: failures, status: status}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			f.mu.Lock()
			f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
			fail := f.failures > 0
			if fail {
				f.failures--
			}
			f.mu.Unlock()
			if fail {
				if f.status == 0 {
					if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
						_ = conn.Close()
					}
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(f.status)
				_, _ = w.Write([]byte(`{"error":{"type":"api_error","message":"injected failure"}}`))
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *faultyStripe) deleteKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...)
}

// statefulStripe is a fake Stripe that remembers deleted customers, as the
// real one does: the first DELETE of an id answers 200, every later one
// 404 resource_missing. stripe-mock cannot, being stateless.
type statefulStripe struct {
	*httptest.Server
	mu      sync.Mutex
	deleted map[string]bool
}

func newStatefulStripe(t testing.TB) *statefulStripe {
	t.Helper()
	f := &statefulStripe{deleted: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/v1/customers/")
		if r.Method != http.MethodDelete || !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		f.mu.Lock()
		gone := f.deleted[id]
		f.deleted[id] = true
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if gone {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: '` + id + `'"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"` + id + `","object":"customer","deleted":true}`))
	}))
	t.Cleanup(f.Close)
	return f
}

// cannedStripe answers every request with one status and body.
func cannedStripe(t testing.TB, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}
