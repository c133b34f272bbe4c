package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/redisconn"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/deadletter"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
	"github.com/lethe-privacy/lethe/services/coordinator/ingress"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lease"
	"github.com/lethe-privacy/lethe/services/coordinator/monitor"
	"github.com/lethe-privacy/lethe/services/coordinator/reconcile"
	"github.com/lethe-privacy/lethe/services/coordinator/reports"
)

// Run builds the coordinator from cfg and serves until ctx is cancelled,
// then shuts down in order: stop taking HTTP requests and messages, let
// running work finish, drain NATS, close Redis. If listening is non-nil it
// receives the HTTP address once the server accepts connections.
func Run(ctx context.Context, cfg Config, log *zap.Logger, listening chan<- string) error {
	// No tokens, no API: the coordinator refuses to start rather than
	// serve anyone anonymously.
	tokens, err := apiauth.OpenStore(cfg.APITokens, log.Named("apiauth"))
	if err != nil {
		return err
	}
	log.Info("api tokens loaded", zap.String("path", cfg.APITokens), zap.Int("tokens", tokens.Len()))
	natsOpts, err := cfg.NATS.Options(brokerauth.Coordinator)
	if err != nil {
		return err
	}
	nc, js, err := natsconn.Connect(cfg.NATSURL, "lethe-coordinator", log, natsOpts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := topology.Ensure(setupCtx, js, cfg.Topology); err != nil {
		return fmt.Errorf("set up jetstream topology (is JetStream enabled on the server?): %w", err)
	}

	rdb, err := redisconn.Open(setupCtx, cfg.Redis())
	if err != nil {
		return err
	}
	defer rdb.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	store := jobstore.New(rdb, cfg.RedisPrefix)
	auditRing, err := auditKeys(cfg, log.Named("audit"))
	if err != nil {
		return err
	}
	rec := newRecorder(js, auditRing)
	pol, err := cfg.LoadPolicy()
	if err != nil {
		return err
	}
	log.Info("retention policy loaded", zap.String("version", pol.Version), zap.String("fingerprint", pol.Fingerprint()), zap.String("path", cfg.PolicyPath))
	disp := dispatch.New(store, js, rec, log.Named("dispatch"), reg, dispatch.Options{
		Lease: lease.New(rdb, cfg.RedisPrefix, "scheduler", holderID(), cmp.Or(cfg.SchedulerLeaseTTL, 10*time.Second)),
		// A replicated tasks stream takes fenced publishes one at a time.
		AsyncPublish: cfg.Topology.Replicas <= 1,
	})
	svc := NewService(store, rec, cfg.Plan(), reg, WithWake(disp.Wake), WithPolicy(pol))

	repCons, err := js.Consumer(setupCtx, erasurev1.ReportsStream, erasurev1.ReportsConsumer)
	if err != nil {
		return fmt.Errorf("look up the reports consumer: %w", err)
	}
	inCons, err := js.Consumer(setupCtx, erasurev1.AccountsStream, erasurev1.IngressConsumer)
	if err != nil {
		return fmt.Errorf("look up the dashboard-event consumer: %w", err)
	}
	certs, err := certificateIssuer(cfg, log.Named("certificate"))
	if err != nil {
		return err
	}
	rebuilder := NewRebuilder(ctx, js, store, log.Named("rebuild"), disp.Wake)
	if err := rebuilder.atStartup(ctx, cfg.RebuildOnEmpty); err != nil {
		return err
	}
	intake := reports.New(repCons, svc, log.Named("reports"), reg, reports.Options{UnknownJobDelay: cfg.UnknownJobRetryDelay})
	events := ingress.New(inCons, js, svc, log.Named("ingress"), reg)
	dead := deadletter.New(js, svc, log.Named("deadletter"), reg)
	mon := monitor.New(js, store, log.Named("monitor"), reg, monitor.Options{Interval: cfg.MonitorInterval, Categories: cfg.Categories})
	recon := reconcile.New(store, js, rec, log.Named("reconcile"), reg, reconcile.Options{
		Interval: cfg.ReconcileInterval, RedispatchAfter: cfg.RedispatchAfter,
	})

	handler := httpapi.NewHandler(svc, log.Named("http"), httpapi.Options{
		Ready: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected to nats")
			}
			if err := rdb.Ping(ctx).Err(); err != nil {
				return errors.New("redis does not answer")
			}
			return nil
		},
		Gatherer:     reg,
		Registerer:   reg,
		DeadLetters:  dead,
		Bulk:         svc,
		Reconciler:   recon,
		Deadlines:    svc,
		Rebuild:      rebuilder.Rebuild,
		Certificates: certs,
		Actions:      svc,
		Audit:        auditVerifier(js, auditRing),
		Auth:         tokens,
		RateLimit:    cfg.APIRateLimit,
		RateBurst:    cfg.APIRateBurst,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (in use? set LETHE_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	log.Info("coordinator serving", zap.String("http_addr", ln.Addr().String()), zap.Strings("categories", cfg.Categories))
	if listening != nil {
		listening <- ln.Addr().String()
	}

	if cfg.PprofAddr != "" {
		pprofSrv, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer pprofSrv.Close()
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 8) // one slot per component, so that none blocks on exit
	for name, run := range map[string]func(context.Context) error{
		"dispatcher":     disp.Run,
		"report intake":  intake.Run,
		"event consumer": events.Run,
		"advisories":     dead.RunAdvisories,
		"monitor":        mon.Run,
		"reconciliation": recon.Run,
		"api tokens": func(ctx context.Context) error {
			return tokens.Run(ctx, cmp.Or(cfg.APITokensReload, 30*time.Second))
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(runCtx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.Error("component failed; shutting down", zap.Error(runErr))
	}
	log.Info("shutting down")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http shutdown", zap.Error(err))
	}
	stop()
	wg.Wait()
	if err := nc.Drain(); err != nil {
		log.Warn("nats drain", zap.Error(err))
	}
	log.Info("coordinator stopped")
	return runErr
}

// holderID names this replica in the scheduler lease: host, pid and a
// random part, so that a restarted process is a new holder.
func holderID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// servePprof serves Go's profiler on addr (checked to be loopback), for
// profiling a running coordinator (docs/benchmarks.md).
func servePprof(addr string, log *zap.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for the profiler (in use? set LETHE_PPROF_ADDR): %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiler serving", zap.String("pprof_addr", ln.Addr().String()))
	return srv, nil
}
