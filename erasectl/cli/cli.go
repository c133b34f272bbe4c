// Package cli is erasectl: the command line of Lethe's privacy team and SREs.
// It asks the coordinator for forced erasures and shows their jobs (through
// the HTTP API), asks the workers what is left of accounts (footprint, over
// NATS request-reply), fills local stores with synthetic demo data (seed),
// and takes, rotates and restores backups of the local stores (backups).
//
// Main parses the arguments, runs one command and returns the process's exit
// code; it is the only place that turns an error into a code and prints it:
//
//	0    ok (request without --wait: the job was accepted)
//	1    unexpected error
//	2    usage error: unknown command, bad flags or arguments
//	3    the job failed (request --wait)
//	4    timed out waiting (request --wait)
//	5    a dependency is unreachable: the coordinator, NATS or a database is
//	     down, or a worker did not answer a footprint query
//	6    no such job (or backup snapshot)
//	7    the job's state does not allow the action (e.g. nothing to replay)
//	8    backups restore: re-applying the erasures to the restored data
//	     failed; the restored data holds erased accounts and must not be used
//	9    certificate verify: the certificate does not verify against the key;
//	     audit verify: the audit trail does not verify (tampered with)
//	10   not allowed: the coordinator did not accept the API token (401), or
//	     the token's role may not do this (403)
//	130  interrupted (SIGINT or SIGTERM)
//
// Errors go to stderr prefixed "erasectl: ", with what to do next where
// there is something to do. Results go to stdout, as aligned tables or, with
// -o json, as one JSON document; progress goes to stderr.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/apiclient"
)

// Exit codes of erasectl. See the package documentation.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitJobFailed   = 3
	ExitTimeout     = 4
	ExitUnavailable = 5
	ExitNotFound    = 6
	ExitConflict    = 7
	// ExitRestoreUnusable: backups restore brought data back but could not
	// re-apply the erasures to it; the targets must not be used.
	ExitRestoreUnusable = 8
	// ExitDenied: the API refused the credential (401) or the principal's
	// role (403).
	ExitDenied      = 10
	ExitInterrupted = 130
)

// Version is erasectl's version, set at build time with
// -ldflags "-X github.com/lethe-privacy/lethe/erasectl/cli.Version=v1.2.3".
var Version = "dev"

// Main runs erasectl with args (without the program name), taking its
// configuration from getenv and flags, and returns the exit code. It writes
// results to stdout, and progress and errors to stderr.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	p := &program{
		stdout:       stdout,
		stderr:       stderr,
		pollInterval: 500 * time.Millisecond,
		httpClient:   &http.Client{Timeout: apiclient.DefaultTimeout},
	}
	return p.main(ctx, args, getenv)
}

// program is one run of erasectl: its configuration and where it writes.
type program struct {
	cfg    config
	stdout io.Writer
	stderr io.Writer
	// pollInterval is how often request --wait asks for the job.
	pollInterval time.Duration
	httpClient   *http.Client
}

func (p *program) main(ctx context.Context, args []string, getenv func(string) string) int {
	p.cfg = configFromEnv(getenv)
	cmd, err := p.parse(args)
	if err != nil {
		return p.exit(err)
	}
	if cmd == nil { // help was asked for and printed
		return ExitOK
	}
	return p.exit(cmd.run(ctx, p))
}

// parse reads the global flags, the command name and the command's flags and
// arguments. It returns a nil command when it printed help instead.
func (p *program) parse(args []string) (command, error) {
	global := flag.NewFlagSet("erasectl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	p.cfg.register(global, allGlobals)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.printUsage(p.stdout)
			return nil, nil
		}
		return nil, usageErrorf("%v", err)
	}
	rest := global.Args()
	if len(rest) == 0 {
		p.printUsage(p.stderr)
		return nil, usageErrorf("no command given")
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return nil, p.help(rest)
	}
	spec, ok := lookup(name)
	if !ok {
		return nil, usageErrorf("unknown command %q; run 'erasectl help' for the list", name)
	}
	cmd := spec.new()
	fs := flag.NewFlagSet(spec.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p.cfg.register(fs, spec.globals)
	cmd.flags(fs)
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.printCommandUsage(p.stdout, spec)
			return nil, nil
		}
		return nil, usageErrorf("%s: %v; run 'erasectl help %s' for usage", spec.name, err, spec.name)
	}
	if err := p.cfg.validate(); err != nil {
		return nil, usageErrorf("%s: %v", spec.name, err)
	}
	if err := cmd.args(pos); err != nil {
		return nil, usageErrorf("%s: %v; run 'erasectl help %s' for usage", spec.name, err, spec.name)
	}
	return cmd, nil
}

// help prints erasectl's usage, or a command's.
func (p *program) help(args []string) error {
	switch len(args) {
	case 0:
		p.printUsage(p.stdout)
		return nil
	case 1:
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
			p.printUsage(p.stdout)
			return nil
		}
		spec, ok := lookup(args[0])
		if !ok {
			return usageErrorf("help: unknown command %q; run 'erasectl help' for the list", args[0])
		}
		p.printCommandUsage(p.stdout, spec)
		return nil
	default:
		return usageErrorf("help takes at most one command name")
	}
}

// exit prints err, if any, and returns its exit code. It is the one place
// where errors are reported.
func (p *program) exit(err error) int {
	if err == nil {
		return ExitOK
	}
	code, msg := classify(err)
	fmt.Fprintf(p.stderr, "erasectl: %s\n", msg)
	return code
}

// classify maps an error to its exit code and the line to print.
func classify(err error) (int, string) {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code, err.Error()
	case errors.Is(err, context.Canceled):
		return ExitInterrupted, "interrupted"
	default:
		return ExitError, err.Error()
	}
}

// exitError carries the exit code that an error should end erasectl with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode gives err an exit code.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// usageErrorf is a usage error: exit code 2.
func usageErrorf(format string, a ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, a...))
}

// command is one erasectl subcommand: it registers its flags, takes its
// positional arguments (returning a usage error when they are wrong) and
// runs.
type command interface {
	flags(fs *flag.FlagSet)
	args(pos []string) error
	run(ctx context.Context, p *program) error
}

// commandSpec describes a command for dispatch and help.
type commandSpec struct {
	name    string
	summary string
	// usage is the synopsis after "erasectl ".
	usage string
	// description and examples are printed by help.
	description string
	examples    string
	// globals selects the global flags that apply to the command.
	globals globalFlag
	new     func() command
}

// commands lists erasectl's commands in help order.
var commands = []commandSpec{
	requestSpec,
	statusSpec,
	listSpec,
	seedSpec,
	footprintSpec,
	backupsSpec,
	eventSpec,
	replaySpec,
	cancelSpec,
	forceSpec,
	holdSpec,
	releaseSpec,
	extendSpec,
	deadLettersSpec,
	reconcileSpec,
	adminSpec,
	certificateSpec,
	auditSpec,
	tokenSpec,
	versionSpec,
}

func lookup(name string) (commandSpec, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return commandSpec{}, false
}

// buildVersion is the version line's module version, when erasectl was built
// with `go install …@version`.
func buildVersion() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}
