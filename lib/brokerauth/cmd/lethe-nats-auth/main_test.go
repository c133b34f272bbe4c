package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/topology"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "conf", args: []string{"conf"}, wantOut: brokerauth.Conf(topology.DefaultSettings().Categories)},
		{name: "conf for one category", args: []string{"conf", "-categories", "logs"}, wantOut: brokerauth.Conf([]string{"logs"})},
		{name: "keys", args: []string{"keys", "-dir", dir}, wantOut: "7 identities in " + dir},
		{name: "keys without dir", args: []string{"keys"}, wantErr: "keys needs -dir DIR"},
		{name: "bad category", args: []string{"conf", "-categories", "Logs"}, wantErr: `"Logs" is not a category`},
		{name: "unknown command", args: []string{"rotate"}, wantErr: `unknown command "rotate"`},
		{name: "bad owner", args: []string{"keys", "-dir", dir, "-owner", "nonroot"}, wantErr: "want numeric UID:GID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tt.args, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q, want it to contain %q", out.String(), tt.wantOut)
			}
		})
	}
	// keys wrote what the server includes.
	for _, f := range []string{brokerauth.ConfFile, brokerauth.KeysFile, brokerauth.SeedFile(brokerauth.Coordinator)} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("keys did not write %s: %v", f, err)
		}
	}
}
