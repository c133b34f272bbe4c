package stripeapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/services/billing/stripemock"
)

const testKey = "sk_test_lethe_unit"

func newClient(t *testing.T, base, key string) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: base, APIKey: redact.New(key), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    Config
		wantErr bool
	}{
		{name: "defaults with a key", give: Config{APIKey: redact.New("sk_live_abc123")}},
		{name: "restricted key", give: Config{APIKey: redact.New("rk_test_abc123")}},
		{name: "loopback http", give: Config{BaseURL: "http://127.0.0.1:12111", APIKey: redact.New(testKey)}},
		{name: "localhost http", give: Config{BaseURL: "http://localhost:12111/", APIKey: redact.New(testKey)}},
		{name: "https elsewhere", give: Config{BaseURL: "https://stripe-proxy.internal.example", APIKey: redact.New(testKey)}},
		{name: "no key", give: Config{}, wantErr: true},
		{name: "publishable key", give: Config{APIKey: redact.New("pk_test_abc")}, wantErr: true},
		{name: "key with a newline", give: Config{APIKey: redact.New("sk_test_abc\nX-Evil: 1")}, wantErr: true},
		{name: "plain http elsewhere", give: Config{BaseURL: "http://api.stripe.com", APIKey: redact.New(testKey)}, wantErr: true},
		{name: "other scheme", give: Config{BaseURL: "ftp://127.0.0.1", APIKey: redact.New(testKey)}, wantErr: true},
		{name: "no host", give: Config{BaseURL: "https://", APIKey: redact.New(testKey)}, wantErr: true},
		{name: "query", give: Config{BaseURL: "https://api.stripe.com?x=1", APIKey: redact.New(testKey)}, wantErr: true},
		{name: "user info", give: Config{BaseURL: "https://u:p@api.stripe.com", APIKey: redact.New(testKey)}, wantErr: true},
		{name: "negative timeout", give: Config{APIKey: redact.New(testKey), Timeout: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate = %v, want it to wrap ErrInvalidConfig", err)
			}
			if k := tt.give.APIKey.Reveal(); k != "" && strings.Contains(err.Error(), k) {
				t.Errorf("error %q repeats the key", err)
			}
		})
	}
}

func TestLivemode(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]bool{"sk_live_1": true, "rk_live_1": true, "sk_test_1": false, "rk_test_1": false} {
		if got := newClient(t, "", key).Livemode(); got != want {
			t.Errorf("Livemode of %s… = %v, want %v", key[:8], got, want)
		}
	}
}

// The happy paths and the errors stripe-mock can produce, against the
// real stripe-mock.
func TestAgainstStripeMock(t *testing.T) {
	t.Parallel()
	sm := stripemock.Start(t)
	ctx := context.Background()

	t.Run("create and delete", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, sm.URL, stripemock.APIKey)
		cust, err := c.CreateCustomer(ctx, CustomerParams{
			Name:     "Jürgen Müller",
			Email:    "j.mueller@nordlicht.example",
			Address:  Address{Line1: "Hauptstraße 12", Line2: "3. OG", PostalCode: "10115", City: "Berlin", Country: "DE"},
			EUVATID:  "DE123456789",
			Metadata: map[string]string{"account_id": "acc-1"},
		}, "lethe-test-create-1")
		if err != nil {
			t.Fatalf("CreateCustomer: %v", err)
		}
		if !ValidCustomerID(cust.ID) || cust.Livemode {
			t.Errorf("CreateCustomer = %+v, want a test-mode cus_ id", cust)
		}
		deleted, err := c.DeleteCustomer(ctx, cust.ID, "lethe-test-delete-1")
		if err != nil || !deleted {
			t.Errorf("DeleteCustomer = %v, %v; want true, nil", deleted, err)
		}
	})

	t.Run("live key refused", func(t *testing.T) {
		t.Parallel()
		const key = "sk_live_not_accepted_by_the_mock"
		c := newClient(t, sm.URL, key)
		_, err := c.DeleteCustomer(ctx, "cus_Abc123", "k1")
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Temporary() {
			t.Fatalf("DeleteCustomer = %v, want a permanent 401 *Error", err)
		}
		// stripe-mock's message quotes the Authorization header.
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "Authorization") {
			t.Errorf("error %q carries the message or the key", err)
		}
	})

	t.Run("wrong base path is not already gone", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, sm.URL+"/wrong", stripemock.APIKey)
		deleted, err := c.DeleteCustomer(ctx, "cus_Abc123", "k1")
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Temporary() || deleted {
			t.Fatalf("DeleteCustomer = %v, %v; want a permanent 404 *Error", deleted, err)
		}
		if strings.Contains(err.Error(), "cus_Abc123") {
			t.Errorf("error %q names the customer", err)
		}
	})
}

// stripeAnswer is one canned answer of a fake Stripe.
type stripeAnswer struct {
	status int
	header map[string]string
	body   string
}

// fakeStripe answers every request with answer and records the requests.
type fakeStripe struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

func newFakeStripe(t *testing.T, answer stripeAnswer) *fakeStripe {
	t.Helper()
	f := &fakeStripe{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Clone(context.Background()))
		f.mu.Unlock()
		for k, v := range answer.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(answer.status)
		_, _ = w.Write([]byte(answer.body))
	}))
	t.Cleanup(f.Close)
	return f
}

// reqs returns the requests received so far.
func (f *fakeStripe) reqs() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.requests...)
}

func stripeError(typ, code, message string) string {
	return `{"error":{"type":"` + typ + `","code":"` + code + `","message":"` + message + `","param":"id"}}`
}

func TestDeleteCustomerAnswers(t *testing.T) {
	t.Parallel()
	const (
		customer = "cus_QxY7Zk2LmN4pR8"
		personal = "jane.doe@kunde.example"
	)
	tests := []struct {
		name        string
		give        stripeAnswer
		wantDeleted bool
		wantErr     bool
		wantTemp    bool
		wantCode    string
	}{
		{name: "deleted", give: stripeAnswer{status: 200, body: `{"id":"` + customer + `","object":"customer","deleted":true}`}, wantDeleted: true},
		{name: "already gone", give: stripeAnswer{status: 404, body: stripeError("invalid_request_error", "resource_missing", "No such customer: '"+customer+"'")}},
		{
			name: "exists in the other mode",
			give: stripeAnswer{status: 404, body: stripeError("invalid_request_error", "resource_missing",
				"No such customer: '"+customer+"'; a similar object exists in live mode, but a test mode key was used to make this request.")},
			wantErr: true, wantCode: "resource_missing_in_this_mode",
		},
		{name: "unknown URL", give: stripeAnswer{status: 404, body: `{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}`}, wantErr: true},
		{name: "404 page of another server", give: stripeAnswer{status: 404, body: `<html>not found</html>`}, wantErr: true},
		{name: "rate limited", give: stripeAnswer{status: 429, body: stripeError("invalid_request_error", "rate_limit", "Too many requests")}, wantErr: true, wantTemp: true, wantCode: "rate_limit"},
		{name: "server error", give: stripeAnswer{status: 500, body: stripeError("api_error", "", "Something went wrong")}, wantErr: true, wantTemp: true},
		{name: "bad gateway without body", give: stripeAnswer{status: 502}, wantErr: true, wantTemp: true},
		{name: "unavailable", give: stripeAnswer{status: 503, body: "upstream connect error"}, wantErr: true, wantTemp: true},
		{name: "idempotency conflict", give: stripeAnswer{status: 409, body: stripeError("idempotency_error", "", "another request in progress")}, wantErr: true, wantTemp: true},
		{name: "bad request", give: stripeAnswer{status: 400, body: stripeError("invalid_request_error", "parameter_invalid_empty", "Invalid email: "+personal)}, wantErr: true, wantCode: "parameter_invalid_empty"},
		{name: "unauthorized", give: stripeAnswer{status: 401, body: stripeError("invalid_request_error", "", "Invalid API Key provided: "+testKey)}, wantErr: true},
		{name: "forbidden", give: stripeAnswer{status: 403, body: stripeError("invalid_request_error", "secret_key_required", "restricted key lacks rak_customer_write")}, wantErr: true, wantCode: "secret_key_required"},
		{name: "stripe says retry", give: stripeAnswer{status: 400, header: map[string]string{"Stripe-Should-Retry": "true"}, body: stripeError("invalid_request_error", "lock_timeout", "")}, wantErr: true, wantTemp: true, wantCode: "lock_timeout"},
		{name: "200 that is not a deletion", give: stripeAnswer{status: 200, body: `<html>welcome to the proxy</html>`}, wantErr: true},
		{name: "200 not deleted", give: stripeAnswer{status: 200, body: `{"id":"` + customer + `","object":"customer","deleted":false}`}, wantErr: true},
		{name: "code that is no identifier", give: stripeAnswer{status: 400, body: stripeError("invalid_request_error", personal, "")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.give.header = mergeHeader(tt.give.header, "Request-Id", "req_7fA2bC9d")
			f := newFakeStripe(t, tt.give)
			c := newClient(t, f.URL, testKey)
			deleted, err := c.DeleteCustomer(context.Background(), customer, "lethe-key-1")
			if deleted != tt.wantDeleted || (err != nil) != tt.wantErr {
				t.Fatalf("DeleteCustomer = %v, %v; want deleted %v, error %v", deleted, err, tt.wantDeleted, tt.wantErr)
			}
			reqs := f.reqs()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodDelete || r.URL.Path != "/v1/customers/"+customer ||
				r.Header.Get("Authorization") != "Bearer "+testKey || r.Header.Get("Idempotency-Key") != "lethe-key-1" {
				t.Errorf("request = %s %s auth %q key %q", r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key"))
			}
			if err == nil {
				return
			}
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if apiErr.Temporary() != tt.wantTemp || apiErr.Code != tt.wantCode || apiErr.StatusCode != tt.give.status {
				t.Errorf("error = %+v (temporary %v), want status %d code %q temporary %v", apiErr, apiErr.Temporary(), tt.give.status, tt.wantCode, tt.wantTemp)
			}
			if apiErr.RequestID != "req_7fA2bC9d" {
				t.Errorf("RequestID = %q", apiErr.RequestID)
			}
			for _, secret := range []string{customer, personal, testKey, "Something went wrong", "Unrecognized"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains %q", err, secret)
				}
			}
		})
	}
}

func mergeHeader(h map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for hk, hv := range h {
		out[hk] = hv
	}
	return out
}

func TestDeleteCustomerRejectsBadArguments(t *testing.T) {
	t.Parallel()
	f := newFakeStripe(t, stripeAnswer{status: 200})
	c := newClient(t, f.URL, testKey)
	tests := []struct {
		name     string
		customer string
		key      string
		wantIs   error
	}{
		{name: "empty id", customer: "", key: "k", wantIs: ErrInvalidCustomerID},
		{name: "path traversal", customer: "cus_1/../../v1/charges", key: "k", wantIs: ErrInvalidCustomerID},
		{name: "other object", customer: "ch_123", key: "k", wantIs: ErrInvalidCustomerID},
		{name: "e-mail", customer: "jane@kunde.example", key: "k", wantIs: ErrInvalidCustomerID},
		{name: "empty key", customer: "cus_1", key: "", wantIs: ErrInvalidIdempotencyKey},
		{name: "long key", customer: "cus_1", key: strings.Repeat("k", 256), wantIs: ErrInvalidIdempotencyKey},
		{name: "key with newline", customer: "cus_1", key: "k\nX: y", wantIs: ErrInvalidIdempotencyKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.DeleteCustomer(context.Background(), tt.customer, tt.key)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("DeleteCustomer = %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.customer != "" && strings.Contains(err.Error(), tt.customer) {
				t.Errorf("error %q repeats the id", err)
			}
		})
	}
	if n := len(f.reqs()); n != 0 {
		t.Errorf("%d requests sent for bad arguments", n)
	}
}

// A transport failure is a plain error (retry), names the host, and not the
// customer, whose id is in the URL.
func TestDeleteCustomerTransportErrors(t *testing.T) {
	t.Parallel()
	const customer = "cus_Transport42"

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		f := newFakeStripe(t, stripeAnswer{status: 200})
		base := f.URL
		f.Close()
		_, err := newClient(t, base, testKey).DeleteCustomer(context.Background(), customer, "k")
		var apiErr *Error
		if err == nil || errors.As(err, &apiErr) {
			t.Fatalf("DeleteCustomer = %v, want a transport error", err)
		}
		if strings.Contains(err.Error(), customer) || !strings.Contains(err.Error(), strings.TrimPrefix(base, "http://")) {
			t.Errorf("error %q: want the host, not the customer", err)
		}
	})

	t.Run("connection dropped", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}))
		t.Cleanup(srv.Close)
		_, err := newClient(t, srv.URL, testKey).DeleteCustomer(context.Background(), customer, "k")
		if err == nil || strings.Contains(err.Error(), customer) {
			t.Fatalf("DeleteCustomer = %v, want a transport error without the customer", err)
		}
	})

	t.Run("context cancelled", func(t *testing.T) {
		t.Parallel()
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(func() { close(block); srv.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := newClient(t, srv.URL, testKey).DeleteCustomer(ctx, customer, "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("DeleteCustomer = %v, want it to wrap context.DeadlineExceeded", err)
		}
	})
}

func TestCreateCustomerAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    stripeAnswer
		wantID  string
		wantErr bool
	}{
		{name: "created", give: stripeAnswer{status: 200, body: `{"id":"cus_New1","object":"customer","livemode":false}`}, wantID: "cus_New1"},
		{name: "no id", give: stripeAnswer{status: 200, body: `{"object":"customer"}`}, wantErr: true},
		{name: "malformed id", give: stripeAnswer{status: 200, body: `{"id":"cus_../x","object":"customer"}`}, wantErr: true},
		{name: "refused", give: stripeAnswer{status: 400, body: stripeError("invalid_request_error", "tax_id_invalid", "Invalid value for eu_vat: DE1")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeStripe(t, tt.give)
			cust, err := newClient(t, f.URL, testKey).CreateCustomer(context.Background(),
				CustomerParams{Name: "Jane Doe", EUVATID: "DE1", Metadata: map[string]string{"account_id": "acc-1"}}, "create-1")
			if cust.ID != tt.wantID || (err != nil) != tt.wantErr {
				t.Fatalf("CreateCustomer = %+v, %v; want id %q, error %v", cust, err, tt.wantID, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "DE1") || strings.Contains(err.Error(), "Jane")) {
				t.Errorf("error %q carries personal data", err)
			}
			r := f.reqs()[0]
			if r.Method != http.MethodPost || r.URL.Path != "/v1/customers" || r.Header.Get("Idempotency-Key") != "create-1" ||
				r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
				t.Errorf("request = %s %s %v", r.Method, r.URL.Path, r.Header)
			}
		})
	}
}
