package billingstore

import (
	"context"
	"testing"
	"time"
)

func date(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRetainUntil(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give          string
		wantUntil     string
		wantDeletable string
	}{
		{give: "2017-01-01", wantUntil: "2025-12-31", wantDeletable: "2026-01-01"},
		{give: "2017-12-31", wantUntil: "2025-12-31", wantDeletable: "2026-01-01"},
		{give: "2018-01-01", wantUntil: "2026-12-31", wantDeletable: "2027-01-01"},
		{give: "2020-02-29", wantUntil: "2028-12-31", wantDeletable: "2029-01-01"},
		{give: "2025-06-15", wantUntil: "2033-12-31", wantDeletable: "2034-01-01"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			issued := date(t, tt.give)
			if got := RetainUntil(issued).Format(time.DateOnly); got != tt.wantUntil {
				t.Errorf("RetainUntil = %s, want %s", got, tt.wantUntil)
			}
			if got := DeletableFrom(issued).Format(time.DateOnly); got != tt.wantDeletable {
				t.Errorf("DeletableFrom = %s, want %s", got, tt.wantDeletable)
			}
		})
	}
	// Only the calendar date counts, not the instant: late on 31 December
	// in Berlin is still that year.
	late := time.Date(2017, 12, 31, 23, 30, 0, 0, retentionZone)
	if got := RetainUntil(late).Format(time.DateOnly); got != "2025-12-31" {
		t.Errorf("RetainUntil(31 Dec 2017 23:30 Berlin) = %s", got)
	}
}

func TestToday(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give string
		want string
	}{
		{give: "2025-12-31T22:59:59Z", want: "2025-12-31"}, // 23:59:59 in Berlin (CET, UTC+1)
		{give: "2025-12-31T23:00:00Z", want: "2026-01-01"}, // midnight in Berlin
		{give: "2026-06-30T21:59:59Z", want: "2026-06-30"}, // CEST, UTC+2
		{give: "2026-06-30T22:00:00Z", want: "2026-07-01"},
		{give: "2026-01-01T00:30:00+01:00", want: "2026-01-01"},
	}
	for _, tt := range tests {
		now, err := time.Parse(time.RFC3339, tt.give)
		if err != nil {
			t.Fatal(err)
		}
		if got := Today(now); got.Format(time.DateOnly) != tt.want || got.Location() != time.UTC || got.Hour() != 0 {
			t.Errorf("Today(%s) = %v, want %s midnight UTC", tt.give, got, tt.want)
		}
	}
}

// The SQL that records retain_until and the SQL that decides what is past
// retention compute what RetainUntil computes, for every day of several
// years (leap years included).
func TestRetentionSQLMatchesGo(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	rows, err := s.pool.Query(context.Background(), `
SELECT d::date, make_date(extract(year FROM d)::int + $1, 12, 31)
FROM generate_series('2015-01-01'::date, '2021-12-31'::date, '1 day') AS d`, RetentionYears)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var issued, until time.Time
		if err := rows.Scan(&issued, &until); err != nil {
			t.Fatal(err)
		}
		if !until.Equal(RetainUntil(issued)) {
			t.Errorf("issued %s: SQL says %s, RetainUntil %s", issued.Format(time.DateOnly), until.Format(time.DateOnly), RetainUntil(issued).Format(time.DateOnly))
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 2557 {
		t.Fatalf("compared %d days (%v), want 2557", n, err)
	}
}
