package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// BenchmarkWalk measures how fast a trail of 20,000 signed entries is
// read from an embedded nats-server and checked (what GET
// /v1/audit/verify does), in entries per second.
func BenchmarkWalk(b *testing.B) {
	const entries = 20000
	srv := testenv.StartNATS(b)
	_, js := srv.Connect(b)
	for _, cfg := range topology.DefaultSettings().Streams() {
		if cfg.Name == erasurev1.LifecycleStream {
			if _, err := js.CreateOrUpdateStream(context.Background(), cfg); err != nil {
				b.Fatal(err)
			}
		}
	}
	k, err := audit.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	ring, _ := audit.NewKeyRing(k)
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(k))
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for n := g; n < entries; n += 32 {
				job := fmt.Sprintf("0190a3b4-0000-7000-8000-%012d", n/8)
				ev := &erasurev1.LifecycleEvent{EventId: fmt.Sprintf("%s:contacts:erase:1:%d", job, n), JobId: job,
					Type: erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED, Actor: "worker:contacts", Category: "contacts", Stage: "erase", Generation: 1, ItemsPurged: 1200}
				if err := rec.Record(context.Background(), ev); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		r, err := audit.Walk(context.Background(), js, ring, audit.WalkOptions{}, nil)
		if err != nil || !r.OK || r.Checked != entries {
			b.Fatalf("walk: %+v, %v", r, err)
		}
	}
	b.ReportMetric(float64(entries)*float64(b.N)/time.Since(start).Seconds(), "entries/s")
}
