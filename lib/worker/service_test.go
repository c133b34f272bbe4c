package worker

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestServiceConfigFlagsAndEnv(t *testing.T) {
	env := map[string]string{"LETHE_RETRY_INITIAL": "2s", "LETHE_MAX_ATTEMPTS": "4", "LETHE_NEVER_RETRY": "quota, refused"}
	var c ServiceConfig
	fs := flag.NewFlagSet("w", flag.ContinueOnError)
	c.RegisterFlags(fs, func(k string) string { return env[k] }, "logs", "127.0.0.1:9102")
	if err := fs.Parse([]string{"-retry-max", "1m", "-never-retry", "quota"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := c.Runtime.Retry
	if r.RedeliveryInitial != 2*time.Second || r.RedeliveryMax != time.Minute || r.MaxAttempts != 4 || strings.Join(r.NeverRetry, ",") != "quota" || c.Runtime.Category != "logs" {
		t.Errorf("config = %+v", c)
	}

	bad := map[string]string{"LETHE_RETRY_INITIAL": "soon", "LETHE_MAX_ATTEMPTS": "many"}
	var c2 ServiceConfig
	c2.RegisterFlags(flag.NewFlagSet("w", flag.ContinueOnError), func(k string) string { return bad[k] }, "logs", "127.0.0.1:9102")
	err := c2.Validate()
	if err == nil || !strings.Contains(err.Error(), "LETHE_RETRY_INITIAL") || !strings.Contains(err.Error(), "LETHE_MAX_ATTEMPTS") {
		t.Errorf("Validate with malformed env = %v, want both variables named", err)
	}
}

func TestServiceConfigStreamReplicas(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    int
		wantErr string
	}{
		{name: "default: one server", want: 1},
		{name: "env for a cluster", env: map[string]string{"LETHE_STREAM_REPLICAS": "3"}, want: 3},
		{name: "flag wins", args: []string{"-stream-replicas", "1"}, env: map[string]string{"LETHE_STREAM_REPLICAS": "3"}, want: 1},
		{name: "not a number", env: map[string]string{"LETHE_STREAM_REPLICAS": "three"}, wantErr: "LETHE_STREAM_REPLICAS"},
		{name: "even", env: map[string]string{"LETHE_STREAM_REPLICAS": "2"}, wantErr: "replicas must be 1, 3 or 5"},
	}
	for _, tt := range tests {
		var c ServiceConfig
		fs := flag.NewFlagSet("w", flag.ContinueOnError)
		c.RegisterFlags(fs, func(k string) string { return tt.env[k] }, "logs", "127.0.0.1:9102")
		err := fs.Parse(tt.args)
		if err == nil {
			err = c.Validate()
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: %v, want an error mentioning %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || c.Topology.Replicas != tt.want {
			t.Errorf("%s: replicas %d, %v; want %d", tt.name, c.Topology.Replicas, err, tt.want)
		}
	}
}
