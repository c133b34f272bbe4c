package harness

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// serviceEnv is where the services find NATS, Redis and their stores.
type serviceEnv struct {
	binDir      string
	logDir      string
	logLevel    string
	pprofAddr   string
	natsURL     string
	redisURL    string
	redisPrefix string
	contactsDSN string
	billingDSN  string
	backupsDSN  string
	logsRoot    string
	backupRoot  string
	certKey     string
	stripeURL   string
	policyPath  string
	tokensPath  string
}

// writeTokensFile writes the coordinator's API tokens file (one JSON entry
// a line, as erasectl token issue writes it), which it refuses to start
// without. The harness never calls the API: the one entry is the hash of
// a random token nobody keeps, for a metrics principal.
func writeTokensFile(path string) error {
	var token [32]byte
	_, _ = rand.Read(token[:]) // never fails: crypto/rand aborts the process instead
	sum := sha256.Sum256([]byte(hex.EncodeToString(token[:])))
	now := time.Now().UTC().Truncate(time.Second)
	line, err := json.Marshal(map[string]string{
		"principal": "bench:metrics", "role": "metrics", "sha256": hex.EncodeToString(sum[:]),
		"created": now.Format(time.RFC3339), "expires": now.Add(24 * time.Hour).Format(time.RFC3339),
	})
	if err != nil {
		return fmt.Errorf("encode the api tokens file: %w", err)
	}
	if err := os.WriteFile(path, append(line, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the api tokens file: %w", err)
	}
	return nil
}

// benchPolicy is the retention policy the coordinator runs with in the
// harness: the shipped default's immediate stages (backups first, the
// others waiting for it) without the dashboard's grace period and without
// the delayed stages (backups verify_rotated at +35 days, billing
// delete_retained by the calendar), so that every job runs to its end
// within the run. The delayed stages are the schedule target's.
const benchPolicy = `version: "bench-1"
grace:
  dashboard: 0
  api: 0
categories:
  - name: backups
    stages:
      - {name: erase, action: suppress, after: 0}
  - name: contacts
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [backups/erase]}
  - name: logs
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [backups/erase]}
  - name: billing
    stages:
      - {name: erase, action: pseudonymise, after: 0, depends_on: [backups/erase]}
`

// service is one running Lethe process.
type service struct {
	name string
	proc *proc
	addr string
}

// startServices starts the coordinator (which creates the JetStream
// topology), waits until it is ready, then starts the four workers at once
// and waits for them. On error everything started is stopped.
func startServices(ctx context.Context, e serviceEnv) ([]*service, error) {
	common := []string{"LETHE_NATS_URL=" + e.natsURL, "LETHE_LOG_FORMAT=json", "LETHE_LOG_LEVEL=" + e.logLevel}
	start := func(name string, env ...string) (*service, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := loopback(port)
		env = append(append(env, common...), "LETHE_HTTP_ADDR="+addr)
		p, err := startProc(name, filepath.Join(e.binDir, name), nil, env, e.logDir)
		if err != nil {
			return nil, err
		}
		s := &service{name: name, proc: p, addr: addr}
		if err := waitHTTP(ctx, "http://"+addr+"/readyz", p, time.Minute); err != nil {
			_ = p.stop(10 * time.Second)
			return nil, err
		}
		return s, nil
	}
	if err := os.WriteFile(e.policyPath, []byte(benchPolicy), 0o600); err != nil {
		return nil, fmt.Errorf("write the bench retention policy: %w", err)
	}
	if err := writeTokensFile(e.tokensPath); err != nil {
		return nil, err
	}
	coord, err := start(BinCoordinator,
		"LETHE_REDIS_URL="+e.redisURL, "LETHE_REDIS_PREFIX="+e.redisPrefix,
		"LETHE_CATEGORIES=contacts,logs,billing,backups", "LETHE_CERTIFICATE_KEY="+e.certKey,
		"LETHE_POLICY="+e.policyPath, "LETHE_API_TOKENS="+e.tokensPath, "LETHE_PPROF_ADDR="+e.pprofAddr)
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{e.logsRoot, e.backupRoot} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			_ = coord.proc.stop(10 * time.Second)
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	workers := []struct {
		name string
		env  []string
	}{
		{BinBackups, []string{"LETHE_BACKUP_ROOT=" + e.backupRoot, "LETHE_BACKUPS_DSN=" + e.backupsDSN}},
		{BinContacts, []string{"LETHE_CONTACTS_DSN=" + e.contactsDSN}},
		{BinLogs, []string{"LETHE_LOGS_ROOT=" + e.logsRoot}},
		{BinBilling, []string{"LETHE_BILLING_DSN=" + e.billingDSN, "LETHE_STRIPE_API_URL=" + e.stripeURL}},
	}
	out := make([]*service, 1+len(workers))
	out[0] = coord
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { out[i+1], errs[i] = start(w.name, w.env...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = stopServices(out)
		return nil, err
	}
	return out, nil
}

// stopServices stops the workers first, then the coordinator, each with
// SIGTERM and time to drain.
func stopServices(ss []*service) error {
	procs := make([]*proc, 0, len(ss))
	for _, s := range ss {
		if s != nil {
			procs = append(procs, s.proc)
		}
	}
	return stopAll(procs, 30*time.Second)
}

// checkAlive returns an error naming the first service that has exited.
func checkAlive(ss []*service) error {
	for _, s := range ss {
		if s.proc.exited() {
			return fmt.Errorf("%s exited during the run (%v); read %s", s.name, s.proc.err, s.proc.logPath)
		}
	}
	return nil
}
