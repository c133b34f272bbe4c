package logstore

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSeedIsReproducible(t *testing.T) {
	t.Parallel()
	opts := SeedOptions{Hours: 2, RecordsPerHour: 30, Start: testStart, Seed: 42}
	a, b := newStore(t), newStore(t)
	seedAccounts(t, a, opts, "acc-1")
	seedAccounts(t, b, opts, "acc-1")
	if ra, rb := decodedRecords(t, a.root), decodedRecords(t, b.root); !reflect.DeepEqual(ra, rb) {
		t.Error("the same options gave different records")
	}
	c := newStore(t)
	seedAccounts(t, c, opts, "acc-2")
	if ra, rc := decodedRecords(t, a.root)["acc-1"], decodedRecords(t, c.root)["acc-2"]; reflect.DeepEqual(ra[0].Recipient, rc[0].Recipient) && reflect.DeepEqual(ra[0].MessageID, rc[0].MessageID) {
		t.Error("two accounts seeded alike got the same records")
	}
}

// Records look like a newsletter platform's: realistic ratios of events,
// addresses under .example only, times inside their hour, in order.
func TestSeedRecordsAreRealistic(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	var progressCalls int
	var lastDone, lastTotal int64
	res, err := s.Seed(context.Background(), "acc-1", SeedOptions{Hours: 6, RecordsPerHour: 500, Start: testStart, Seed: 3}, func(done, total int64) {
		progressCalls++
		lastDone, lastTotal = done, total
	})
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if res.Records != 3000 || res.Segments != 6 || progressCalls != 6 || lastDone != 3000 || lastTotal != 3000 {
		t.Errorf("result %+v, progress %d calls ending %d/%d; want 3000 records in 6 segments, 6 calls", res, progressCalls, lastDone, lastTotal)
	}
	var sum int64
	for _, n := range res.Events {
		sum += n
	}
	if sum != res.Records {
		t.Errorf("events add up to %d, want %d", sum, res.Records)
	}
	sent := float64(res.Events[EventSent])
	ratio := func(e EventType) float64 { return float64(res.Events[e]) / sent }
	for _, c := range []struct {
		event    EventType
		min, max float64
	}{
		{EventDelivered, 0.9, 1.0},
		{EventBounced, 0.005, 0.08},
		{EventOpened, 0.2, 0.7},
		{EventClicked, 0.02, 0.2},
	} {
		if r := ratio(c.event); r < c.min || r > c.max {
			t.Errorf("%s per sent = %.3f, want between %.3f and %.3f", c.event, r, c.min, c.max)
		}
	}
	recs := decodedRecords(t, s.root)["acc-1"]
	if len(recs) != 3000 {
		t.Fatalf("%d records on disk, want 3000", len(recs))
	}
	end := testStart.Add(6 * time.Hour)
	for _, r := range recs {
		if !strings.HasSuffix(r.Recipient, ".example") || !strings.Contains(r.Recipient, "@") || r.Subject == "" || r.MessageID == "" {
			t.Fatalf("unrealistic record %s", r)
		}
		if r.Time.Before(testStart) || !r.Time.Before(end) {
			t.Fatalf("record at %s outside the seeded hours", r.Time)
		}
		if (r.Event == EventClicked) != (r.URL != "") || (r.Event == EventBounced) != (r.Bounce != "") {
			t.Fatalf("event %s with url %t, bounce %t", r.Event, r.URL != "", r.Bounce != "")
		}
	}
	for h := range 6 {
		hour := testStart.Add(time.Duration(h) * time.Hour)
		var prev time.Time
		for _, line := range fileLines(t, s.paths(hourOf(hour)).sealed) {
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("seeded line is no record: %v", err)
			}
			if r.Time.Before(prev) || hourOf(r.Time) != hourOf(hour) {
				t.Fatalf("record at %s out of order or outside its hour %s", r.Time, hour)
			}
			prev = r.Time
		}
	}
}

// Several accounts seeded over the same hours share the hours' segments,
// and the index lists each of them there.
func TestSeedSharesSegments(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, smallSeed(), "acc-1", "acc-2", "acc-3")
	if files := segmentFiles(t, s.root); len(files) != 3 {
		t.Fatalf("%d segment files, want 3 (one per hour)", len(files))
	}
	// Seed writes sidecars; the in-memory index loads them at the next
	// pass or footprint.
	if _, err := s.Footprint(context.Background(), []string{"acc-1"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acc-1", "acc-2", "acc-3"} {
		if hs := s.index.hoursOf(id); len(hs) != 3 {
			t.Errorf("index lists %s in %d hours, want 3", id, len(hs))
		}
	}
	checkIndexInvariant(t, s)
}

// An hour a writer has open takes seeded records into its open segment;
// the writer seals it.
func TestSeedAppendsToAnOpenHour(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if err := s.Append(ctx, testStart, records("acc-1", testStart, 3)); err != nil {
		t.Fatal(err)
	}
	seedAccounts(t, s, SeedOptions{Hours: 1, RecordsPerHour: 10, Start: testStart}, "acc-2")
	p := s.paths(hourOf(testStart))
	if ok, _ := exists(p.sealed); ok {
		t.Fatal("Seed sealed an open hour")
	}
	if got := len(fileLines(t, p.open)); got != 13 {
		t.Errorf("open segment has %d lines, want 13", got)
	}
}

func TestSeedRejectsBadArguments(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	tests := []struct {
		name    string
		account string
		opts    SeedOptions
		wantIs  error
	}{
		{name: "e-mail address as account", account: "jane@nordpost.example", wantIs: ErrInvalidAccountID},
		{name: "negative hours", account: "acc-1", opts: SeedOptions{Hours: -1}, wantIs: ErrInvalidSeedOptions},
		{name: "negative records", account: "acc-1", opts: SeedOptions{RecordsPerHour: -1}, wantIs: ErrInvalidSeedOptions},
		{name: "too many hours", account: "acc-1", opts: SeedOptions{Hours: maxSeedHours + 1}, wantIs: ErrInvalidSeedOptions},
		{name: "before 1970", account: "acc-1", opts: SeedOptions{Hours: 1, Start: time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)}, wantIs: ErrInvalidHour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.Seed(context.Background(), tt.account, tt.opts, nil)
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Seed = %v, want it to wrap %v", err, tt.wantIs)
			}
			if strings.Contains(err.Error(), "jane@") {
				t.Errorf("error %q repeats the address", err)
			}
		})
	}
	if files := segmentFiles(t, s.root); len(files) != 0 {
		t.Errorf("refused seeds wrote %d segments", len(files))
	}
}

func TestSeedDefaults(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 13, 45, 0, 0, time.UTC)
	got, err := SeedOptions{}.withDefaults(now)
	if err != nil {
		t.Fatal(err)
	}
	want := SeedOptions{Hours: defaultSeedHours, RecordsPerHour: defaultSeedRecordsPerHour, Start: time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)}
	if got != want {
		t.Errorf("defaults = %+v, want %+v (ending where the current hour begins)", got, want)
	}
}
