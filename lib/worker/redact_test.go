package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// TestStoreErrorsQuotingDataStayOutOfReports fails purges with PostgreSQL
// errors whose server message quotes a personal value, once for good and
// once until the deliveries run out: neither the reports, the dead letters
// nor the log lines carry the value; the SQLSTATE and the program's own
// words do.
func TestStoreErrorsQuotingDataStayOutOfReports(t *testing.T) {
	t.Parallel()
	const secret = "alice@example.com"
	pgErr := &pgconn.PgError{Severity: "ERROR", Code: "P0001", Message: "refusing to change customer " + secret}
	e := setup(t, fastSettings())
	core, logs := observer.New(zap.DebugLevel)
	cfg := fastConfig()
	rt, err := worker.New(cfg, e.NC, e.JS, purgeFunc(func(_ context.Context, tk worker.Task) (worker.Result, error) {
		err := fmt.Errorf("erase customer of account %s: %w", tk.AccountID, pgErr)
		if tk.JobID == "job-permanent" {
			return worker.Result{}, worker.Permanent(err)
		}
		return worker.Result{}, err
	}), zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); <-done }()

	for _, job := range []string{"job-permanent", "job-transient"} {
		e.publishTask(t, job)
		r, _ := e.finalReport(t)
		if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_FAILED || !strings.Contains(r.GetErrorMessage(), "SQLSTATE P0001") ||
			!strings.Contains(r.GetErrorMessage(), redact.Withheld) || strings.Contains(r.GetErrorMessage(), secret) {
			t.Errorf("%s: report %s %q, want failed with the message withheld", job, r.GetOutcome(), r.GetErrorMessage())
		}
	}
	for _, m := range e.deadLetters(t) {
		for k, v := range m.Header {
			if strings.Contains(strings.Join(v, " "), secret) {
				t.Errorf("dead letter header %s quotes the value: %q", k, v)
			}
		}
	}
	for _, entry := range logs.All() {
		enc := zapcore.NewMapObjectEncoder()
		for _, f := range entry.Context {
			f.AddTo(enc)
		}
		if line := fmt.Sprint(entry.Message, enc.Fields); strings.Contains(line, secret) {
			t.Errorf("log line quotes the value: %s", line)
		}
	}
}
