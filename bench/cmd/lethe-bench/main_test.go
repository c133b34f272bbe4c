package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/bench/harness"
)

func TestParseAppliesThePresetThenTheFlags(t *testing.T) {
	tests := []struct {
		name       string
		give       []string
		wantJobs   int
		wantWindow int
		wantStores []harness.Storage
	}{
		{"small by default", nil, 3000, 1000, []harness.Storage{"default", "always"}},
		{"tiny preset", []string{"-size", "tiny"}, 20, 20, []harness.Storage{"default", "always"}},
		{"flag over preset", []string{"-size=full", "-jobs", "7", "-storage", "always"}, 7, 1000, []harness.Storage{"always"}},
		{"both", []string{"-storage", "both"}, 3000, 1000, []harness.Storage{"default", "always"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, out, _, err := parse(tt.give, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Jobs != tt.wantJobs || cfg.Window != tt.wantWindow || !slices.Equal(cfg.Storages, tt.wantStores) || out != "table" {
				t.Errorf("jobs %d window %d storages %v output %q; want %d %d %v table", cfg.Jobs, cfg.Window, cfg.Storages, out, tt.wantJobs, tt.wantWindow, tt.wantStores)
			}
		})
	}
}

func TestRunRejectsBadFlagsWithUsageExit(t *testing.T) {
	for _, args := range [][]string{{"-size", "huge"}, {"-o", "yaml"}, {"extra"}, {"-targets", "nonsense", "-nats-server", "x"}} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, &bytes.Buffer{}, &stderr); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d; stderr:\n%s", args, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "lethe-bench:") {
			t.Errorf("run(%q) said nothing on stderr", args)
		}
	}
}
