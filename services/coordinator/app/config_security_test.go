package app

import (
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/lib/tlsfiles"
)

func TestLoadConfigCredentialsAndTLS(t *testing.T) {
	env := map[string]string{
		"LETHE_NATS_NKEY_SEED_FILE": "/run/secrets/coordinator.nk",
		"LETHE_NATS_CA":             "/etc/lethe/nats-ca.pem",
		"LETHE_REDIS_URL":           "rediss://lethe:pw@redis:6380/0",
		"LETHE_REDIS_CA":            "/etc/lethe/redis-ca.pem",
	}
	c, err := LoadConfig([]string{"-redis-cert", "/c.pem", "-redis-key", "/k.pem"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.NKeySeedFile != "/run/secrets/coordinator.nk" || c.NATS.TLS.CA != "/etc/lethe/nats-ca.pem" {
		t.Errorf("NATS = %+v", c.NATS)
	}
	if want := (tlsfiles.Files{CA: "/etc/lethe/redis-ca.pem", Cert: "/c.pem", Key: "/k.pem"}); c.Redis().TLSFiles != want {
		t.Errorf("Redis TLS = %+v, want %+v", c.Redis().TLSFiles, want)
	}

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "two NATS credentials", env: map[string]string{"LETHE_NATS_USER": "c", "LETHE_NATS_CREDS": "/c.creds"}, want: "set only one of"},
		{name: "NATS key without certificate", args: []string{"-nats-key", "/k.pem"}, want: "LETHE_NATS_CERT and LETHE_NATS_KEY"},
		{name: "Redis certificate without key", args: []string{"-redis-cert", "/c.pem"}, want: "LETHE_REDIS_CERT and LETHE_REDIS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(tt.args, func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadConfig() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
