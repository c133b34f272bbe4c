package stripeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Error is an answer of Stripe that is not a success: an error object
// (https://docs.stripe.com/api/errors) or an answer the client cannot use.
// It keeps only what classifies the failure; Stripe's message is dropped
// because it can quote personal data or the API key.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Type is Stripe's error type ("invalid_request_error", "api_error");
	// "unexpected_answer" for a success status whose body is not the
	// object asked for. Empty when absent or not a plain identifier.
	Type string
	// Code is Stripe's error code ("resource_missing", "rate_limit"),
	// empty when absent or not a plain identifier.
	Code string
	// RequestID is Stripe's Request-Id header: quote it to Stripe's support.
	RequestID string
	// ShouldRetry is true when Stripe sent Stripe-Should-Retry: true.
	ShouldRetry bool
}

// Error describes the failure by status, type, code and request id only.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stripe answered %d", e.StatusCode)
	if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" " + t)
	}
	var parts []string
	if e.Type != "" {
		parts = append(parts, "type "+e.Type)
	}
	if e.Code != "" {
		parts = append(parts, "code "+e.Code)
	}
	if e.RequestID != "" {
		parts = append(parts, "request "+e.RequestID)
	}
	if len(parts) > 0 {
		b.WriteString(" (" + strings.Join(parts, ", ") + ")")
	}
	return b.String()
}

// Temporary reports whether the same request may succeed later: Stripe
// said so (Stripe-Should-Retry: true), or the status is 409 (a concurrent
// request with the same idempotency key), 429 (rate limited) or 5xx. Every
// other answer (400, 401, 402, 403, 404 other than "already gone") needs a
// person: a bad key, a missing permission, a wrong base URL.
func (e *Error) Temporary() bool {
	return e.ShouldRetry ||
		e.StatusCode == http.StatusConflict ||
		e.StatusCode == http.StatusTooManyRequests ||
		e.StatusCode >= 500
}

// decodeError reads Stripe's error object from an answer. It never fails:
// a body that is not Stripe's leaves Type and Code empty. The message is
// returned separately, for the few decisions that need it, and must never
// be printed or stored.
func decodeError(status int, header http.Header, body []byte) (apiErr *Error, message string) {
	var env struct {
		Error struct {
			Type    string `json:"type"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	// A type mismatch in one field leaves the others decoded; any error
	// just means less to go on.
	_ = json.Unmarshal(body, &env)
	e := &Error{
		StatusCode: status,
		Type:       identifier(env.Error.Type, false),
		Code:       identifier(env.Error.Code, false),
	}
	e.RequestID, e.ShouldRetry = fromHeader(header)
	return e, env.Error.Message
}

// unexpectedAnswer is the error for a success status whose body is not
// what the call expects.
func unexpectedAnswer(status int, header http.Header) *Error {
	e := &Error{StatusCode: status, Type: "unexpected_answer"}
	e.RequestID, _ = fromHeader(header)
	return e
}

func fromHeader(h http.Header) (requestID string, shouldRetry bool) {
	if h == nil {
		return "", false
	}
	return identifier(h.Get("Request-Id"), true), strings.EqualFold(strings.TrimSpace(h.Get("Stripe-Should-Retry")), "true")
}

// identifier returns s when it is a plain identifier of at most 64 bytes,
// lower-case letters, digits and underscores (Stripe's types and codes;
// with mixedCase also upper-case letters, as in request ids), and "" for
// anything else, so that nothing but an identifier from an answer ever
// reaches an error message.
func identifier(s string, mixedCase bool) string {
	if len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		case mixedCase && c >= 'A' && c <= 'Z':
		default:
			return ""
		}
	}
	return s
}
