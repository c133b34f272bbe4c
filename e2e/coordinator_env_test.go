package e2e

import (
	"net/http"
	"testing"
)

// coordinatorTestEnv is the extra environment a coordinator process under
// test needs (credentials, when the API and broker require them).
func coordinatorTestEnv(t *testing.T) []string {
	t.Helper()
	return nil
}

// addAuth adds the API credential tests use, when there is one.
func addAuth(req *http.Request) {}
