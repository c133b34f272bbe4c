package app

import (
	"fmt"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	env := map[string]string{"LETHE_CATEGORIES": "contacts, logs,billing,backups", "LETHE_HTTP_ADDR": "127.0.0.1:9999"}
	c, err := LoadConfig([]string{"-redis-prefix", "x:"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9999" || c.RedisPrefix != "x:" || len(c.Categories) != 4 {
		t.Errorf("config = %+v", c)
	}
	var plan []string
	for _, s := range c.Plan() {
		plan = append(plan, fmt.Sprintf("%s/%s:%s<%v", s.Category, s.Stage, s.Action, s.DependsOn))
	}
	want := "[backups/erase:suppress<[] contacts/erase:delete<[backups/erase] logs/erase:delete<[backups/erase] billing/erase:pseudonymise<[backups/erase]]"
	if fmt.Sprint(plan) != want {
		t.Errorf("plan = %v\nwant   %s", plan, want)
	}
}

func TestLoadConfigPprofOnLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:0"} {
		c, err := LoadConfig([]string{"-pprof-addr", addr}, func(string) string { return "" })
		if err != nil || c.PprofAddr != addr {
			t.Errorf("-pprof-addr %s: %v (PprofAddr %q)", addr, err, c.PprofAddr)
		}
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-http-addr", "nonsense"}, nil, "LETHE_HTTP_ADDR"},
		{nil, map[string]string{"LETHE_CATEGORIES": "Contacts"}, "lower-case"},
		{nil, map[string]string{"LETHE_CATEGORIES": " , "}, "no category"},
		{[]string{"-stream-replicas", "2"}, nil, "replicas"},
		{[]string{"extra"}, nil, "unexpected argument"},
		{[]string{"-pprof-addr", "0.0.0.0:6060"}, nil, "loopback"},
		{nil, map[string]string{"LETHE_PPROF_ADDR": "6060"}, "LETHE_PPROF_ADDR"},
	}
	for _, tt := range tests {
		_, err := LoadConfig(tt.args, func(k string) string { return tt.env[k] })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadConfig(%v, %v) = %v, want an error mentioning %q", tt.args, tt.env, err, tt.want)
		}
	}
}

func TestLoadConfigStreamReplicas(t *testing.T) {
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
		c, err := LoadConfig(tt.args, func(k string) string { return tt.env[k] })
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: LoadConfig = %v, want an error mentioning %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || c.Topology.Replicas != tt.want {
			t.Errorf("%s: replicas %d, %v; want %d", tt.name, c.Topology.Replicas, err, tt.want)
		}
	}
}
