// Package apiclient is a typed client of the coordinator's HTTP API
// (/v1/erasures). It speaks the JSON shapes of the coordinator's apiv1 package
// package and turns every answer that is not a success into an error a caller
// can inspect: *APIError when the coordinator answered, *UnreachableError when
// it could not be reached at all.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// DefaultTimeout bounds one HTTP exchange when the caller's context has no
// earlier deadline.
const DefaultTimeout = 30 * time.Second

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 20

// Client calls the coordinator's HTTP API. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
	// token is sent as "Authorization: Bearer <token>"; empty: none.
	token string
}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient makes the Client send its requests through hc instead of a
// client with DefaultTimeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return fmt.Errorf("%w: nil http client", ErrInvalidOption)
		}
		c.hc = hc
		return nil
	}
}

// WithToken makes the Client send token as a bearer credential with every
// request. It returns an error wrapping ErrInvalidOption for a token with
// characters that cannot stand in a header.
func WithToken(token string) Option {
	return func(c *Client) error {
		if strings.ContainsAny(token, " \t\r\n") {
			return fmt.Errorf("%w: the API token holds white space", ErrInvalidOption)
		}
		c.token = token
		return nil
	}
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = ua
		return nil
	}
}

// New returns a client of the API at baseURL (scheme and host, optionally a
// path prefix: "http://127.0.0.1:8080"). It returns an error wrapping
// ErrInvalidOption when baseURL is not an absolute http(s) URL or an option
// is invalid.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: parse API URL: %w", ErrInvalidOption, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: API URL %q must be an absolute http or https URL", ErrInvalidOption, u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	u.RawQuery = ""
	u.Fragment = ""
	c := &Client{
		base:      u,
		hc:        &http.Client{Timeout: DefaultTimeout},
		userAgent: "erasectl",
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// BaseURL is the API's address with any user info removed, fit for messages.
func (c *Client) BaseURL() string { return c.base.Redacted() }

// CreateErasure asks for the erasure of req.AccountID (POST /v1/erasures).
// The coordinator creates the job or, when the account already has an active
// one, returns that: Job.Created tells which.
func (c *Client) CreateErasure(ctx context.Context, req apiv1.CreateErasureRequest) (apiv1.Job, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return apiv1.Job{}, fmt.Errorf("encode erasure request: %w", err)
	}
	var job apiv1.Job
	if err := c.do(ctx, http.MethodPost, "/v1/erasures", nil, body, &job); err != nil {
		return apiv1.Job{}, fmt.Errorf("create erasure: %w", err)
	}
	return job, nil
}

// ReplayErasure schedules tasks of job id again (POST
// /v1/erasures/{id}/replay). A 409 comes back as an *APIError with code
// "conflict".
func (c *Client) ReplayErasure(ctx context.Context, id string, req apiv1.ReplayRequest) (apiv1.ReplayResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return apiv1.ReplayResponse{}, fmt.Errorf("encode replay request: %w", err)
	}
	var out apiv1.ReplayResponse
	if err := c.do(ctx, http.MethodPost, "/v1/erasures/"+url.PathEscape(id)+"/replay", nil, body, &out); err != nil {
		return apiv1.ReplayResponse{}, fmt.Errorf("replay job %s: %w", id, err)
	}
	return out, nil
}

// Act applies a privacy action (cancel, force, hold, release, extend) to
// job id (POST /v1/erasures/{id}/{action}). A 409 — the job's status does
// not allow it — comes back as an *APIError with code "conflict".
func (c *Client) Act(ctx context.Context, id, action string, req apiv1.ActionRequest) (apiv1.Job, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return apiv1.Job{}, fmt.Errorf("encode %s request: %w", action, err)
	}
	var job apiv1.Job
	if err := c.do(ctx, http.MethodPost, "/v1/erasures/"+url.PathEscape(id)+"/"+url.PathEscape(action), nil, body, &job); err != nil {
		return apiv1.Job{}, fmt.Errorf("%s job %s: %w", action, id, err)
	}
	return job, nil
}

// GetErasure returns the job with the given id and its tasks
// (GET /v1/erasures/{id}). An unknown id is an *APIError with Status 404;
// IsNotFound tells.
func (c *Client) GetErasure(ctx context.Context, id string) (apiv1.Job, error) {
	if id == "" {
		return apiv1.Job{}, fmt.Errorf("get erasure: %w: empty job id", ErrInvalidArgument)
	}
	var job apiv1.Job
	if err := c.do(ctx, http.MethodGet, "/v1/erasures/"+url.PathEscape(id), nil, nil, &job); err != nil {
		return apiv1.Job{}, fmt.Errorf("get erasure %s: %w", id, err)
	}
	return job, nil
}

// ListErasures returns one page of jobs (GET /v1/erasures), newest first as
// the coordinator orders them. Empty accountID and status and a zero pageSize
// leave the filter or size to the coordinator; pageToken is the previous
// page's NextPageToken, or empty for the first page.
func (c *Client) ListErasures(ctx context.Context, accountID, status string, pageSize int, pageToken string) (apiv1.JobList, error) {
	if pageSize < 0 {
		return apiv1.JobList{}, fmt.Errorf("list erasures: %w: negative page size", ErrInvalidArgument)
	}
	q := url.Values{}
	if accountID != "" {
		q.Set("account_id", accountID)
	}
	if status != "" {
		q.Set("status", status)
	}
	if pageSize > 0 {
		q.Set("page_size", strconv.Itoa(pageSize))
	}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	var list apiv1.JobList
	if err := c.do(ctx, http.MethodGet, "/v1/erasures", q, nil, &list); err != nil {
		return apiv1.JobList{}, fmt.Errorf("list erasures: %w", err)
	}
	return list, nil
}

// do sends one request and decodes a 2xx answer's JSON body into out.
// escapedPath is appended to the base URL's path as it is: escape the
// segments that come from callers.
func (c *Client) do(ctx context.Context, method, escapedPath string, q url.Values, body []byte, out any) error {
	u := *c.base
	u.RawPath = c.base.EscapedPath() + escapedPath
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return fmt.Errorf("build request path: %w", err)
	}
	u.Path = p
	u.RawQuery = q.Encode()

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.setHeaders(req)

	resp, err := c.hc.Do(req)
	if err != nil {
		// The caller gave up (interrupt, its own deadline): say so, not
		// that the coordinator is down.
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return &UnreachableError{URL: c.BaseURL(), Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("decode %d answer: %w", resp.StatusCode, err)
	}
	return nil
}

// setHeaders sets the headers every request carries: the credential and
// the User-Agent.
func (c *Client) setHeaders(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
}

// HasToken reports whether the client sends a credential.
func (c *Client) HasToken() bool { return c.token != "" }

// decodeError turns a non-2xx answer into an *APIError. A body that is not
// the documented ErrorBody (a proxy's HTML page, say) still yields an
// *APIError with the status and its text.
func decodeError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	var body apiv1.ErrorBody
	if err := json.Unmarshal(raw, &body); err == nil && (body.Error.Code != "" || body.Error.Message != "") {
		e.Code = body.Error.Code
		e.Message = body.Error.Message
	}
	if e.Message == "" {
		e.Message = strings.ToLower(http.StatusText(resp.StatusCode))
	}
	return e
}

// unwrapURLError drops *url.Error's "Get \"http://…\":" prefix: the
// UnreachableError names the URL once.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
