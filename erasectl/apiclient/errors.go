package apiclient

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Errors returned by the client. Test for them with errors.Is and errors.As.
var (
	// ErrInvalidOption is wrapped by New when its URL or an option is invalid.
	ErrInvalidOption = errors.New("invalid client option")
	// ErrInvalidArgument is wrapped by a method called with an argument the
	// API cannot take (an empty job id); no request was sent.
	ErrInvalidArgument = errors.New("invalid argument")
)

// APIError is the coordinator's answer to a request it did not fulfil: the
// HTTP status and the documented error body's code and message.
type APIError struct {
	// Status is the HTTP status code, e.g. 404.
	Status int
	// Code is the stable machine-readable code, e.g. "not_found"; empty when
	// the body was not the documented error body.
	Code string
	// Message is meant for people. The coordinator never puts personal data
	// in it.
	Message string
	// RetryAfter is how long to wait before asking again, from a 429's
	// Retry-After header; zero when the answer gave none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	return fmt.Sprintf("coordinator answered %d %s: %s", e.Status, code, e.Message)
}

// UnreachableError says the coordinator could not be reached: connection
// refused, DNS failure, a timeout before any answer.
type UnreachableError struct {
	// URL is the API's base URL without user info.
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("reach coordinator at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsNotFound reports whether err is an *APIError with status 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}
