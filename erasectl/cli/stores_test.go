package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// storesEnv is an environment whose every store is the test's own: three
// temporary databases and two temporary directories. Tests of commands
// that touch stores must use it, so that nothing reaches the defaults
// (/var/lib/lethe, the demo databases).
func storesEnv(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	return map[string]string{
		EnvContactsDSN: testenv.Postgres(t),
		EnvBillingDSN:  testenv.Postgres(t),
		EnvBackupsDSN:  testenv.Postgres(t),
		EnvLogsRoot:    filepath.Join(dir, "logs"),
		EnvBackupRoot:  filepath.Join(dir, "backups"),
	}
}

// smallSeed are seed arguments that keep every store small.
var smallSeed = []string{"--contacts", "30", "--lists", "2", "--properties", "2",
	"--log-hours", "3", "--log-records-per-hour", "20", "--invoices", "6", "--seed", "3"}

// with returns env with more variables.
func with(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// logFootprint counts the accounts' records under a log root.
func logFootprint(t *testing.T, root string, ids ...string) map[string]int64 {
	t.Helper()
	st, err := logstore.Open(t.Context(), root)
	if err != nil {
		t.Fatalf("open log store %s: %v", root, err)
	}
	defer st.Close()
	fps, err := st.Footprint(t.Context(), ids)
	if err != nil {
		t.Fatalf("log footprint: %v", err)
	}
	out := map[string]int64{}
	for _, fp := range fps {
		out[fp.AccountID] = fp.Items
	}
	return out
}

// billingFootprint is the billing store's footprint of one account.
func billingFootprint(t *testing.T, dsn, id string) map[string]int64 {
	t.Helper()
	st, err := billingstore.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("open billing store: %v", err)
	}
	defer st.Close()
	fps, err := st.Footprint(t.Context(), []string{id})
	if err != nil {
		t.Fatalf("billing footprint: %v", err)
	}
	out := fps[0].Detail
	out["items"] = fps[0].Items
	return out
}

// fakeStripe is a Stripe API on loopback that creates customers and
// records the keys it was sent.
type fakeStripe struct {
	*httptest.Server
	mu   sync.Mutex
	keys []string
	n    int
}

func newFakeStripe(t *testing.T) *fakeStripe {
	f := &fakeStripe{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.keys = append(f.keys, r.Header.Get("Authorization"))
		f.n++
		n := f.n
		f.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/v1/customers" {
			http.Error(w, `{"error":{"type":"invalid_request_error"}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "cus_Fake" + strings.Repeat("x", n), "object": "customer", "livemode": false})
	}))
	t.Cleanup(f.Close)
	return f
}

// fakeProvider stands in for Stripe where the live billing worker deletes
// customers.
type fakeProvider struct{}

func (fakeProvider) CreateCustomer(context.Context, stripeapi.CustomerParams, string) (stripeapi.Customer, error) {
	return stripeapi.Customer{}, errors.New("not in this test")
}

func (fakeProvider) DeleteCustomer(context.Context, string, string) (bool, error) { return true, nil }

var _ billingstore.PaymentProvider = fakeProvider{}

func task(category, action, accountID string) worker.Task {
	return worker.Task{JobID: "job-" + accountID, AccountID: accountID, Category: category, Stage: "erase", Action: action, Generation: 1, Attempt: 1}
}

// By default seed fills all three stores, with one table per store.
func TestSeedAllStores(t *testing.T) {
	env := storesEnv(t)
	r := runCLI(t, env, append([]string{"seed", "demo-0001", "demo-0002"}, smallSeed...)...)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, w := range []string{
		"seeding demo-0001: 30/30 contacts\n",
		"seeding demo-0001: 60/60 log records\n",
		"seeding demo-0002: 60/60 log records\n",
		"seeding demo-0002: 6/6 invoices\n",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	for _, w := range []string{
		"contacts:\nACCOUNT    LISTS  CONTACTS  MEMBERS  PROPERTIES\ndemo-0001  2      30 ",
		"\n\nlogs:\nACCOUNT    RECORDS  SEGMENTS\ndemo-0001  60       3\ndemo-0002  60       3\n",
		"\n\nbilling:\nACCOUNT    CUSTOMERS  PROVIDER_CUSTOMERS  INVOICES  PAST_RETENTION\ndemo-0001  1          0                   6  ",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	// What the tables say is in the stores.
	if got := logFootprint(t, env[EnvLogsRoot], "demo-0001", "demo-0002"); got["demo-0001"] != 60 || got["demo-0002"] != 60 {
		t.Errorf("log records = %v, want 60 each", got)
	}
	if fp := billingFootprint(t, env[EnvBillingDSN], "demo-0002"); fp[billingstore.KindCustomerFields] == 0 || fp[billingstore.KindProviderCustomer] != 1 {
		t.Errorf("billing footprint = %v, want a customer with an (invented) provider id", fp)
	}
	if c := countRows(t, env[EnvContactsDSN], "demo-0002"); c["contacts"] != 30 {
		t.Errorf("contacts = %v", c)
	}

	// JSON, and billing customers created at a Stripe API with the key
	// from the environment, which is never printed.
	stripe := newFakeStripe(t)
	const key = "sk_test_OnlyFromTheEnv42"
	r = runCLI(t, with(env, EnvStripeAPIURL, stripe.URL, EnvStripeAPIKey, key),
		"seed", "demo-0003", "--stores", "billing,logs", "--invoices", "2", "--log-hours", "1", "--log-records-per-hour", "5", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("seed with stripe: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	var got struct {
		Accounts []seedResult `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if len(got.Accounts) != 1 || got.Accounts[0].Stores["billing"]["provider_customers"] != 1 ||
		got.Accounts[0].Stores["billing"]["invoices"] != 2 || got.Accounts[0].Stores["logs"]["records"] != 5 {
		t.Errorf("json = %+v", got.Accounts)
	}
	if _, ok := got.Accounts[0].Stores["contacts"]; ok {
		t.Errorf("contacts seeded although --stores left them out")
	}
	if len(stripe.keys) != 1 || stripe.keys[0] != "Bearer "+key {
		t.Errorf("stripe was sent %d requests with keys %q, want one with the env key", len(stripe.keys), stripe.keys)
	}
	if strings.Contains(r.stdout+r.stderr, key) {
		t.Errorf("output shows the Stripe key")
	}
}

// A Stripe configuration that cannot work fails before any store is
// seeded, and never shows the key.
func TestSeedStripeConfig(t *testing.T) {
	const key = "sk_test_NeverShown99"
	tests := []struct {
		name       string
		env        map[string]string
		wantStderr string
	}{
		{
			name:       "remote API without key",
			env:        map[string]string{EnvStripeAPIURL: "https://api.stripe.example"},
			wantStderr: "LETHE_STRIPE_API_KEY is not set",
		},
		{
			name:       "plain http to another host",
			env:        map[string]string{EnvStripeAPIURL: "http://stripe.example", EnvStripeAPIKey: key},
			wantStderr: "plain http is only allowed on loopback",
		},
		{
			name:       "not a key",
			env:        map[string]string{EnvStripeAPIURL: "http://127.0.0.1:12111", EnvStripeAPIKey: "pk_test_" + key},
			wantStderr: "API key is missing or not a secret",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The stores are unreachable: seed must fail before it tries them.
			env := with(tt.env, EnvContactsDSN, "postgres://x@"+freeAddr(t)+"/x", EnvBillingDSN, "postgres://x@"+freeAddr(t)+"/x",
				EnvLogsRoot, filepath.Join(t.TempDir(), "logs"))
			r := runCLI(t, env, "seed", "demo-0001")
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) || strings.Contains(r.stderr, "seeding") {
				t.Errorf("stderr = %q, want %q and no progress", r.stderr, tt.wantStderr)
			}
			if strings.Contains(r.stderr, key) {
				t.Errorf("stderr shows the key: %q", r.stderr)
			}
		})
	}
}
