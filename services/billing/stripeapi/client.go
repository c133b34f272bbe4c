// Package stripeapi is a minimal client of the two calls of Stripe's HTTP API
// that Lethe needs: create a customer (demo data) and delete one (erasure).
// It is plain net/http rather than stripe-go, which would pull in a client
// for the whole API to make two requests.
//
// The client turns Stripe's answers into three outcomes: success (a 404
// resource_missing on delete counts as "already gone"), an *Error whose
// Temporary method says whether retrying can help, and transport errors
// (always worth a retry). Errors never carry Stripe's message text, the
// customer id or the API key: Stripe's messages quote request values (an
// e-mail address, a customer id), and a mock's 401 even echoes the
// Authorization header. Errors end up in logs and task reports.
package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/lib/redact"
)

// DefaultBaseURL is Stripe's API.
const DefaultBaseURL = "https://api.stripe.com"

// DefaultTimeout bounds one request unless Config.Timeout says otherwise.
const DefaultTimeout = 30 * time.Second

// maxBody is the most of an answer the client reads. Stripe's customer and
// error objects are a few kilobytes.
const maxBody = 1 << 20

var (
	// ErrInvalidConfig is wrapped by New's error for an unusable Config.
	ErrInvalidConfig = errors.New("invalid stripe client config")
	// ErrInvalidCustomerID is wrapped by DeleteCustomer's error for an id
	// that is not of Stripe's form (cus_ and letters or digits). No request
	// is sent: the id is put into the URL path.
	ErrInvalidCustomerID = errors.New("invalid stripe customer id")
	// ErrInvalidIdempotencyKey is wrapped by the errors of both calls for a
	// key that is empty, longer than Stripe's 255 characters, or not
	// printable ASCII.
	ErrInvalidIdempotencyKey = errors.New("invalid idempotency key")
)

// Config configures a Client. APIKey is required.
type Config struct {
	// BaseURL is where the API is; default DefaultBaseURL. Plain http is
	// accepted for loopback hosts only (stripe-mock), as the key would
	// otherwise travel in clear text.
	BaseURL string
	// APIKey is a secret (sk_...) or restricted (rk_...) key. Its printed
	// forms are redacted.
	APIKey redact.String
	// Timeout bounds one request; default DefaultTimeout.
	Timeout time.Duration
	// HTTPClient sends the requests; default a client with Timeout. When
	// set, Timeout is not applied to it.
	HTTPClient *http.Client
}

var keyPattern = regexp.MustCompile(`^[sr]k_[A-Za-z0-9_]+$`)

// Validate reports the first problem with c. Its errors wrap
// ErrInvalidConfig and never repeat the key.
func (c Config) Validate() error {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("%w: base URL does not parse", ErrInvalidConfig)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%w: base URL %q must be http or https", ErrInvalidConfig, u.Redacted())
	case u.Host == "":
		return fmt.Errorf("%w: base URL %q has no host", ErrInvalidConfig, u.Redacted())
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Errorf("%w: base URL %q: plain http is only allowed on loopback (the API key would travel in clear text)", ErrInvalidConfig, u.Redacted())
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%w: base URL %q must not have user info, query or fragment", ErrInvalidConfig, u.Redacted())
	}
	if key := c.APIKey.Reveal(); !keyPattern.MatchString(key) {
		return fmt.Errorf("%w: API key is missing or not a secret (sk_) or restricted (rk_) key", ErrInvalidConfig)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Client calls Stripe's API. It is safe for concurrent use.
type Client struct {
	base string
	key  redact.String
	http *http.Client
}

// New returns a client for cfg. Its error wraps ErrInvalidConfig.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	hc := cfg.HTTPClient
	if hc == nil {
		timeout := cfg.Timeout
		if timeout == 0 {
			timeout = DefaultTimeout
		}
		hc = &http.Client{Timeout: timeout}
	}
	return &Client{base: strings.TrimSuffix(base, "/"), key: cfg.APIKey, http: hc}, nil
}

// Livemode reports whether the client's key is a live-mode key. Stripe
// keeps test and live objects apart: a test key finds no live customer.
func (c *Client) Livemode() bool {
	k := c.key.Reveal()
	return strings.HasPrefix(k, "sk_live_") || strings.HasPrefix(k, "rk_live_")
}

var customerIDPattern = regexp.MustCompile(`^cus_[A-Za-z0-9]{1,250}$`)

// ValidCustomerID reports whether id has the form of a Stripe customer id.
func ValidCustomerID(id string) bool { return customerIDPattern.MatchString(id) }

func checkIdempotencyKey(key string) error {
	if key == "" || len(key) > 255 {
		return fmt.Errorf("%w: length %d, want 1 to 255", ErrInvalidIdempotencyKey, len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return fmt.Errorf("%w: byte %d is not printable ASCII", ErrInvalidIdempotencyKey, i)
		}
	}
	return nil
}

// DeleteCustomer deletes the customer customerID (DELETE
// /v1/customers/{id}) and reports whether this call deleted it. A 404 with
// the code resource_missing means the customer is already gone: deleted
// is false and err nil, so that a retried erasure succeeds.
//
// idempotencyKey is sent as the Idempotency-Key header; derive it from the
// erasure task so that every retry sends the same one. (Stripe documents
// the header for POST; DELETE is idempotent by itself, and the 404 rule
// above is what makes a repeated delete succeed.)
//
// Errors: ErrInvalidCustomerID or ErrInvalidIdempotencyKey (wrapped) for bad
// arguments, before anything is sent; an *Error for any other answer of
// Stripe, including a 404 that is not resource_missing (a wrong base URL)
// and a resource_missing 404 that says the customer exists in the other
// mode (a test key used for live data); a wrapped transport error otherwise,
// which names neither the customer nor the key.
func (c *Client) DeleteCustomer(ctx context.Context, customerID, idempotencyKey string) (deleted bool, err error) {
	if !ValidCustomerID(customerID) {
		return false, fmt.Errorf("delete stripe customer: %w", ErrInvalidCustomerID)
	}
	if err := checkIdempotencyKey(idempotencyKey); err != nil {
		return false, fmt.Errorf("delete stripe customer: %w", err)
	}
	status, header, body, err := c.do(ctx, http.MethodDelete, "/v1/customers/"+customerID, nil, idempotencyKey)
	if err != nil {
		return false, fmt.Errorf("delete stripe customer: %w", err)
	}
	switch {
	case status >= 200 && status < 300:
		var ans struct {
			Object  string `json:"object"`
			Deleted bool   `json:"deleted"`
		}
		// Anything but Stripe's deleted-object answer (a proxy's or a wrong
		// server's 200 page) must not count as an erasure.
		if json.Unmarshal(body, &ans) != nil || ans.Object != "customer" || !ans.Deleted {
			return false, fmt.Errorf("delete stripe customer: %w", unexpectedAnswer(status, header))
		}
		return true, nil
	case status == http.StatusNotFound:
		apiErr, msg := decodeError(status, header, body)
		if apiErr.Code == "resource_missing" && !otherModeMessage(msg) {
			return false, nil
		}
		if apiErr.Code == "resource_missing" {
			apiErr.Code = "resource_missing_in_this_mode"
		}
		return false, fmt.Errorf("delete stripe customer: %w", apiErr)
	default:
		apiErr, _ := decodeError(status, header, body)
		return false, fmt.Errorf("delete stripe customer: %w", apiErr)
	}
}

// otherModeMessage reports whether a resource_missing message says that the
// object exists in the other mode ("...; a similar object exists in live
// mode, but a test mode key was used to make this request."). Such a 404
// does not mean "already deleted": the customer is alive where the key
// cannot see it.
func otherModeMessage(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "similar object exists in live mode") ||
		strings.Contains(m, "similar object exists in test mode")
}

// Address is a postal address as Stripe stores it.
type Address struct {
	Line1      string
	Line2      string
	PostalCode string
	City       string
	// Country is an ISO 3166-1 alpha-2 code ("DE").
	Country string
}

// CustomerParams are the fields CreateCustomer sends. Empty fields are not
// sent.
type CustomerParams struct {
	Name    string
	Email   string
	Address Address
	// EUVATID is sent as a tax id of type eu_vat.
	EUVATID string
	// Metadata is stored with the customer; Lethe sends the internal
	// account id, never personal data.
	Metadata map[string]string
}

// Customer is what CreateCustomer returns.
type Customer struct {
	ID       string
	Livemode bool
}

// CreateCustomer creates a customer (POST /v1/customers) and returns its id.
// idempotencyKey makes a retry of the same call return the same customer
// instead of a second one; use a fresh key for every new customer (Stripe
// remembers keys for at least 24 hours). Errors are as for DeleteCustomer;
// an answer without a well-formed customer id is an *Error too.
func (c *Client) CreateCustomer(ctx context.Context, p CustomerParams, idempotencyKey string) (Customer, error) {
	if err := checkIdempotencyKey(idempotencyKey); err != nil {
		return Customer{}, fmt.Errorf("create stripe customer: %w", err)
	}
	form := url.Values{}
	set := func(k, v string) {
		if v != "" {
			form.Set(k, v)
		}
	}
	set("name", p.Name)
	set("email", p.Email)
	set("address[line1]", p.Address.Line1)
	set("address[line2]", p.Address.Line2)
	set("address[postal_code]", p.Address.PostalCode)
	set("address[city]", p.Address.City)
	set("address[country]", p.Address.Country)
	if p.EUVATID != "" {
		form.Set("tax_id_data[0][type]", "eu_vat")
		form.Set("tax_id_data[0][value]", p.EUVATID)
	}
	for k, v := range p.Metadata {
		set("metadata["+k+"]", v)
	}
	status, header, body, err := c.do(ctx, http.MethodPost, "/v1/customers", form, idempotencyKey)
	if err != nil {
		return Customer{}, fmt.Errorf("create stripe customer: %w", err)
	}
	if status < 200 || status >= 300 {
		apiErr, _ := decodeError(status, header, body)
		return Customer{}, fmt.Errorf("create stripe customer: %w", apiErr)
	}
	cust, ok := decodeCustomer(body)
	if !ok {
		return Customer{}, fmt.Errorf("create stripe customer: %w", unexpectedAnswer(status, header))
	}
	return cust, nil
}

// decodeCustomer reads a customer object; ok is false unless it has a
// well-formed customer id.
func decodeCustomer(body []byte) (Customer, bool) {
	var ans struct {
		ID       string `json:"id"`
		Object   string `json:"object"`
		Livemode bool   `json:"livemode"`
	}
	if json.Unmarshal(body, &ans) != nil || ans.Object != "customer" || !ValidCustomerID(ans.ID) {
		return Customer{}, false
	}
	return Customer{ID: ans.ID, Livemode: ans.Livemode}, true
}

// do sends one request and reads the answer. Its error is a transport
// error stripped of the URL, which holds the customer id.
func (c *Client) do(ctx context.Context, method, path string, form url.Values, idempotencyKey string) (int, http.Header, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		// The path is of fixed shape and the base URL validated; only the
		// method could be wrong.
		return 0, nil, nil, fmt.Errorf("build %s request: invalid request", method)
	}
	req.Header.Set("Authorization", "Bearer "+c.key.Reveal())
	req.Header.Set("Idempotency-Key", idempotencyKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "lethe-billing-worker")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, transportError(method, req.URL.Host, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, transportError(method, req.URL.Host, err)
	}
	// Drain what is left so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, resp.Header, data, nil
}

// transportError keeps the cause (a timeout, a refused connection, ctx's
// error) and the host, and drops the URL that *url.Error would print.
func transportError(method, host string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s request to %s: %w", method, host, err)
}
