package tlsfiles_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/lib/tlsfiles"
	"github.com/lethe-privacy/lethe/lib/tlsfiles/tlstest"
)

func TestConfig(t *testing.T) {
	pki := tlstest.New(t)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    tlsfiles.Files
		wantErr string
	}{
		{name: "CA and client certificate", give: pki.Client()},
		{name: "CA only", give: tlsfiles.Files{CA: pki.CA}},
		{name: "missing CA file", give: tlsfiles.Files{CA: "/does/not/exist.pem"}, wantErr: "read CA file /does/not/exist.pem"},
		{name: "CA file without PEM", give: tlsfiles.Files{CA: notPEM}, wantErr: "holds no PEM certificate"},
		{name: "certificate without key", give: tlsfiles.Files{Cert: pki.ClientCert}, wantErr: "needs its key"},
		{name: "key of another certificate", give: tlsfiles.Files{Cert: pki.ClientCert, Key: pki.ServerKey}, wantErr: "load client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.give.Config("db.internal")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Config() = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RootCAs == nil || cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "db.internal" || len(cfg.Certificates) != map[bool]int{true: 1}[tt.give.Cert != ""] {
				t.Errorf("Config() = %+v", cfg)
			}
		})
	}
	if err := (tlsfiles.Files{Key: "k.pem"}).Validate("LETHE_REDIS"); !errors.Is(err, tlsfiles.ErrInvalid) || !strings.Contains(err.Error(), "LETHE_REDIS_CERT and LETHE_REDIS_KEY") {
		t.Errorf("Validate() = %v", err)
	}
	if (tlsfiles.Files{}).Enabled() || !pki.Client().Enabled() {
		t.Error("Enabled() is wrong")
	}
}
