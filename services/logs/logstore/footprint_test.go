package logstore

import (
	"context"
	"maps"
	"testing"
	"time"
)

func TestFootprint(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, SeedOptions{Hours: 4, RecordsPerHour: 25, Start: testStart}, "acc-7")
	seedAccounts(t, s, SeedOptions{Hours: 2, RecordsPerHour: 5, Start: testStart.Add(3 * time.Hour)}, "acc-8")
	seven := map[string]int64{DetailRecords: 100, DetailSegments: 4}
	eight := map[string]int64{DetailRecords: 10, DetailSegments: 2}
	zero := map[string]int64{DetailRecords: 0, DetailSegments: 0}

	tests := []struct {
		name string
		give []string
		want []map[string]int64
	}{
		{name: "none", give: nil, want: nil},
		{name: "unknown", give: []string{"acc-404"}, want: []map[string]int64{zero}},
		{name: "two accounts sharing a segment", give: []string{"acc-7", "acc-8"}, want: []map[string]int64{seven, eight}},
		{name: "input order, repeats and invalid ids", give: []string{"acc-404", "acc-8", "", "jane@nordpost.example", "acc-8"}, want: []map[string]int64{zero, eight, zero, zero, eight}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Footprint(context.Background(), tt.give)
			if err != nil {
				t.Fatalf("Footprint: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries, want %d", len(got), len(tt.want))
			}
			for i, fp := range got {
				if fp.AccountID != tt.give[i] || fp.Items != tt.want[i][DetailRecords] || !maps.Equal(fp.Detail, tt.want[i]) {
					t.Errorf("entry %d = %s %d %v, want %s %v", i, fp.AccountID, fp.Items, fp.Detail, tt.give[i], tt.want[i])
				}
			}
		})
	}
}

// The footprint counts what is in the segments, not what the index says:
// a sidecar that lists an account whose records are gone (a crash between
// segment and sidecar) does not make them count.
func TestFootprintCountsRecordsNotIndexEntries(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, SeedOptions{Hours: 1, RecordsPerHour: 10, Start: testStart}, "acc-1")
	if _, err := s.writeSidecar(s.paths(hourOf(testStart)), []string{"acc-1", "acc-ghost"}); err != nil {
		t.Fatal(err)
	}
	fps, err := s.Footprint(context.Background(), []string{"acc-ghost", "acc-1"})
	if err != nil {
		t.Fatal(err)
	}
	if fps[0].Items != 0 || fps[1].Items != 10 {
		t.Errorf("footprints = %d and %d, want 0 and 10", fps[0].Items, fps[1].Items)
	}
}
