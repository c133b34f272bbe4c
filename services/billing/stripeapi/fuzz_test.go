package stripeapi

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// safeError is everything an *Error may print: digits, the status text,
// identifiers and punctuation of its own format.
var safeError = regexp.MustCompile(`^stripe answered -?[0-9]+( [A-Za-z' -]+)?( \((type [a-z0-9_]+|code [a-z0-9_]+|request [A-Za-z0-9_]+)(, (type [a-z0-9_]+|code [a-z0-9_]+|request [A-Za-z0-9_]+))*\))?$`)

// FuzzDecodeError feeds the decoder of Stripe's error answers (outside
// input) arbitrary bodies and headers: it must never panic, and the error it
// builds must print nothing but identifiers — never the message, whatever
// the body holds.
func FuzzDecodeError(f *testing.F) {
	f.Add(404, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: 'cus_1'"}}`, "req_1", "false")
	f.Add(401, `{"error":{"type":"invalid_request_error","message":"Authorization was 'Bearer sk_test_1'"}}`, "", "")
	f.Add(429, `{"error":{"code":"rate_limit"}}`, "req_x", "true")
	f.Add(500, `<html>oops</html>`, "", "")
	f.Add(400, `{"error":{"type":"a b","code":"jane@kunde.example","message":123}}`, "req with space", "TRUE")
	f.Add(418, `{"error":null}`, "", "")
	f.Add(0, ``, "", "")
	f.Add(200, `{"id":"cus_1","object":"customer","deleted":true}`, "", "")
	f.Fuzz(func(t *testing.T, status int, body, requestID, shouldRetry string) {
		h := http.Header{}
		h.Set("Request-Id", requestID)
		h.Set("Stripe-Should-Retry", shouldRetry)
		e, msg := decodeError(status, h, []byte(body))
		s := e.Error()
		if !safeError.MatchString(s) {
			t.Fatalf("Error() = %q prints more than identifiers", s)
		}
		if len(msg) > 8 && strings.Contains(s, msg) {
			t.Fatalf("Error() = %q contains the message %q", s, msg)
		}
		if e.StatusCode != status {
			t.Fatalf("StatusCode = %d, want %d", e.StatusCode, status)
		}
		_ = e.Temporary()
		_ = otherModeMessage(msg)
		if c, ok := decodeCustomer([]byte(body)); ok && !ValidCustomerID(c.ID) {
			t.Fatalf("decodeCustomer accepted id %q", c.ID)
		}
	})
}
