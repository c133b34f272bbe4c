package cli

import (
	"context"
	"flag"
	"fmt"
	"runtime"
)

var versionSpec = commandSpec{
	name:        "version",
	summary:     "print erasectl's version",
	usage:       "version",
	description: "Prints erasectl's version and the Go toolchain and platform it was built for.",
	examples:    "  erasectl version\n  erasectl version -o json",
	new:         func() command { return versionCmd{} },
}

type versionCmd struct{}

func (versionCmd) flags(*flag.FlagSet) {}

func (versionCmd) args(pos []string) error {
	if len(pos) != 0 {
		return fmt.Errorf("takes no arguments, got %d", len(pos))
	}
	return nil
}

func (versionCmd) run(_ context.Context, p *program) error {
	v := struct {
		Version string `json:"version"`
		Go      string `json:"go"`
		OS      string `json:"os"`
		Arch    string `json:"arch"`
	}{buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH}
	if p.cfg.json() {
		return writeJSON(p.stdout, v)
	}
	_, err := fmt.Fprintf(p.stdout, "erasectl %s (%s %s/%s)\n", v.Version, v.Go, v.OS, v.Arch)
	return err
}
