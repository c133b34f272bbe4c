package topology_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*topology.Settings)
		wantErr bool
	}{
		{"defaults", func(*topology.Settings) {}, false},
		{"three replicas", func(s *topology.Settings) { s.Replicas = 3 }, false},
		{"two replicas", func(s *topology.Settings) { s.Replicas = 2 }, true},
		{"backoff longer than max deliver", func(s *topology.Settings) {
			s.TaskMaxDeliver = 2
			s.TaskBackOff = []time.Duration{time.Second, time.Second, time.Second}
		}, true},
		{"no categories", func(s *topology.Settings) { s.Categories = []string{} }, true},
		{"category with a dot", func(s *topology.Settings) { s.Categories = []string{"con.tacts"} }, true},
		{"category with a wildcard", func(s *topology.Settings) { s.Categories = []string{"*"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := topology.DefaultSettings()
			tt.give(&s)
			err := s.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, topology.ErrInvalidSettings) {
				t.Errorf("error does not wrap ErrInvalidSettings: %v", err)
			}
		})
	}
}

func TestEnsureCreatesEverythingAndIsIdempotent(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	s := topology.DefaultSettings()
	s.Categories = []string{"contacts", "logs"}
	for range 3 {
		if err := topology.Ensure(ctx, js, s); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	for _, name := range []string{erasurev1.TasksStream, erasurev1.ReportsStream, erasurev1.LifecycleStream, erasurev1.AccountsStream, erasurev1.RejectedStream} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if st.CachedInfo().Config.Storage != jetstream.FileStorage {
			t.Errorf("stream %s is not file-backed", name)
		}
	}
	life, _ := js.Stream(ctx, erasurev1.LifecycleStream)
	if c := life.CachedInfo().Config; !c.DenyDelete || !c.DenyPurge || c.MaxAge != 0 {
		t.Errorf("lifecycle stream is not append-only forever: %+v", c)
	}
	tasks, _ := js.Stream(ctx, erasurev1.TasksStream)
	if tasks.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
		t.Error("tasks stream is not a work queue")
	}
	for _, c := range []struct{ stream, name string }{
		{erasurev1.TasksStream, "worker-contacts"}, {erasurev1.TasksStream, "worker-logs"},
		{erasurev1.ReportsStream, erasurev1.ReportsConsumer}, {erasurev1.AccountsStream, erasurev1.IngressConsumer},
	} {
		cons, err := js.Consumer(ctx, c.stream, c.name)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.name, err)
		}
		if cons.CachedInfo().Config.AckPolicy != jetstream.AckExplicitPolicy {
			t.Errorf("consumer %s does not ack explicitly", c.name)
		}
	}
	// A lifecycle entry cannot be deleted.
	if _, err := js.Publish(ctx, erasurev1.LifecycleSubject("job-1"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := life.DeleteMsg(ctx, 1); err == nil {
		t.Error("deleting a lifecycle entry succeeded; the trail must be append-only")
	}
	if err := life.Purge(ctx); err == nil {
		t.Error("purging the lifecycle stream succeeded; the trail must be append-only")
	}
}

func TestEnsureRejectsInvalidSettings(t *testing.T) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	s := topology.DefaultSettings()
	s.Replicas = 2
	if err := topology.Ensure(context.Background(), js, s); !errors.Is(err, topology.ErrInvalidSettings) {
		t.Errorf("Ensure with 2 replicas = %v, want ErrInvalidSettings", err)
	}
}
