package app

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
)

func TestLoadConfigAPITokens(t *testing.T) {
	env := map[string]string{"LETHE_API_TOKENS": "/etc/lethe/api/api-tokens.jsonl", "LETHE_API_RATE_LIMIT": "5"}
	c, err := LoadConfig([]string{"-api-rate-burst", "10"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.APITokens != "/etc/lethe/api/api-tokens.jsonl" || c.APIRateLimit != 5 || c.APIRateBurst != 10 || c.APITokensReload.Seconds() != 30 {
		t.Errorf("config = %+v", c)
	}
	if _, err := LoadConfig([]string{"-api-rate-limit", "-1"}, func(string) string { return "" }); err == nil {
		t.Error("a negative rate limit: no error")
	}
	if _, err := LoadConfig(nil, func(k string) string { return map[string]string{"LETHE_API_RATE_BURST": "lots"}[k] }); err == nil {
		t.Error("LETHE_API_RATE_BURST=lots: no error")
	}
}

// TestRunRefusesToStartWithoutAPITokens: without a tokens file, or with
// one that lets no one in, the coordinator does not start (and connects
// to nothing first: the NATS URL here leads nowhere).
func TestRunRefusesToStartWithoutAPITokens(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "api-tokens.jsonl")
	if err := os.WriteFile(empty, []byte(apiauth.FileHeader), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path string
		want       error
	}{
		{"no file named", "", apiauth.ErrNoFile},
		{"a file with no token", empty, apiauth.ErrInvalidFile},
		{"a missing file", filepath.Join(t.TempDir(), "nope.jsonl"), os.ErrNotExist},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{NATSURL: "nats://127.0.0.1:1", APITokens: tt.path}
			if err := Run(t.Context(), cfg, zap.NewNop(), nil); !errors.Is(err, tt.want) {
				t.Errorf("Run() = %v, want %v", err, tt.want)
			}
		})
	}
}
