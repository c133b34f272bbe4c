package logstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func records(account string, hour time.Time, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{
			Time: hour.Add(time.Duration(i) * time.Second), AccountID: account, Event: EventSent,
			MessageID: "<m@x.example>", Recipient: "jane.doe@nordpost.example", Subject: "Ihr Newsletter",
		}
	}
	return out
}

func TestAppendAndSeal(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	hour := testStart.Add(30 * time.Minute) // any time in the hour names it
	p := s.paths(hourOf(hour))
	if err := s.Append(ctx, hour, records("acc-1", testStart, 5)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := s.Append(ctx, hour, append(records("acc-2", testStart, 2), records("acc-1", testStart, 1)...)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if fp := footprint(t, s, "acc-1"); fp.Items != 6 {
		t.Errorf("footprint of the open hour = %d, want 6", fp.Items)
	}
	if err := s.Seal(ctx, hour); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if ok, _ := exists(p.open); ok {
		t.Error("open segment still there after Seal")
	}
	_, listed, err := loadSidecar(p.sidecar)
	if err != nil || !slices.Equal(listed, []string{"acc-1", "acc-2"}) {
		t.Errorf("sidecar = %v, %v; want [acc-1 acc-2]", listed, err)
	}
	if fp := footprint(t, s, "acc-1"); fp.Items != 6 || fp.Detail[DetailSegments] != 1 {
		t.Errorf("footprint after Seal = %v, want 6 records in 1 segment", fp.Detail)
	}
	if got := len(fileLines(t, p.sealed)); got != 8 {
		t.Errorf("sealed segment has %d lines, want 8", got)
	}
	if err := s.Append(ctx, hour, records("acc-1", testStart, 1)); !errors.Is(err, ErrSegmentSealed) {
		t.Errorf("Append to a sealed hour = %v, want ErrSegmentSealed", err)
	}
	if err := s.Seal(ctx, hour); err != nil {
		t.Errorf("Seal again = %v, want nil", err)
	}
	if err := s.Seal(ctx, hour.Add(time.Hour)); err != nil {
		t.Errorf("Seal of an hour without records = %v, want nil", err)
	}
	if ok, _ := exists(s.paths(hourOf(hour.Add(time.Hour))).sealed); ok {
		t.Error("Seal of an hour without records created a segment")
	}
	if st := s.Stats(); st.Seals != 1 {
		t.Errorf("Seals = %d, want 1", st.Seals)
	}
}

func TestAppendRefusesBadInput(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	recs := records("acc-1", testStart, 3)
	recs[2].AccountID = "jane.doe@nordpost.example"
	err := s.Append(ctx, testStart, recs)
	if !errors.Is(err, ErrInvalidAccountID) {
		t.Fatalf("Append = %v, want ErrInvalidAccountID", err)
	}
	for _, personal := range []string{recs[2].AccountID, recs[0].Recipient, recs[0].Subject} {
		if strings.Contains(err.Error(), personal) {
			t.Errorf("error %q contains personal data", err)
		}
	}
	if len(segmentFiles(t, s.root)) != 0 {
		t.Error("a refused batch was partly written")
	}
	if err := s.Append(ctx, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), records("acc-1", testStart, 1)); !errors.Is(err, ErrInvalidHour) {
		t.Errorf("Append in 1960 = %v, want ErrInvalidHour", err)
	}
	if err := s.Append(ctx, testStart, nil); err != nil {
		t.Errorf("Append of nothing = %v, want nil", err)
	}
}

// A writer that crashed mid-append leaves a torn last line. The next
// append starts on a new line, so the torn line stays one malformed line
// (kept) and the new record stays intact.
func TestAppendAfterATornLine(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if err := s.Append(ctx, testStart, records("acc-1", testStart, 2)); err != nil {
		t.Fatal(err)
	}
	p := s.paths(hourOf(testStart))
	f, err := os.OpenFile(p.open, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := `{"ts":"2026-11-29T10:00:09Z","account_id":"acc-1","event":"se`
	if _, err := f.WriteString(torn); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if err := s.Append(ctx, testStart, records("acc-1", testStart, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(ctx, testStart); err != nil {
		t.Fatal(err)
	}
	lines := fileLines(t, p.sealed)
	if len(lines) != 4 || string(lines[2]) != torn {
		t.Fatalf("sealed lines = %q, want 2 records, the torn line, 1 record", lines)
	}
	if fp := footprint(t, s, "acc-1"); fp.Items != 3 {
		t.Errorf("footprint = %d, want 3 records", fp.Items)
	}
	res, err := purge(ctx, s, "acc-1")
	if err != nil || res.ItemsPurged != 3 {
		t.Fatalf("Purge = %d, %v; want 3, nil", res.ItemsPurged, err)
	}
	if lines := fileLines(t, p.sealed); len(lines) != 1 || string(lines[0]) != torn {
		t.Errorf("after purge = %q, want only the torn line, kept", lines)
	}
}

// A line longer than the filter assembles is streamed through untouched.
func TestVeryLongLineIsKept(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if err := s.Append(ctx, testStart, records("acc-1", testStart, 2)); err != nil {
		t.Fatal(err)
	}
	p := s.paths(hourOf(testStart))
	long := `{"account_id":"acc-2","blob":"` + strings.Repeat("x", maxLineLen+readBufferSize+17) + `"}`
	f, err := os.OpenFile(p.open, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(long + "\n"); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if err := s.Append(ctx, testStart, records("acc-1", testStart, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(ctx, testStart); err != nil {
		t.Fatal(err)
	}
	res, err := purge(ctx, s, "acc-1")
	if err != nil || res.ItemsPurged != 3 {
		t.Fatalf("Purge = %d, %v; want 3, nil", res.ItemsPurged, err)
	}
	lines := fileLines(t, p.sealed)
	if len(lines) != 1 || !bytes.Equal(lines[0], []byte(long)) {
		t.Errorf("the long line did not survive intact (%d lines)", len(lines))
	}
}
