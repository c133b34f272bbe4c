package logstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOpenValidatesOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		root   string
		opts   []Option
		wantIs error
	}{
		{name: "valid", opts: []Option{WithLinger(0), WithParallelism(8)}},
		{name: "empty root", root: "-", wantIs: ErrInvalidOption},
		{name: "negative linger", opts: []Option{WithLinger(-time.Second)}, wantIs: ErrInvalidOption},
		{name: "zero parallelism", opts: []Option{WithParallelism(0)}, wantIs: ErrInvalidOption},
		{name: "nil logger", opts: []Option{WithLogger(nil)}, wantIs: ErrInvalidOption},
		{name: "nil registerer", opts: []Option{WithRegisterer(nil)}, wantIs: ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if tt.root == "-" {
				root = ""
			}
			s, err := Open(context.Background(), root, tt.opts...)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				_ = s.Close()
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Open = %v, want it to wrap %v", err, tt.wantIs)
			}
		})
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(s.Root(), segmentsDir)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Error("Ping succeeded without a segments directory")
	}
}
