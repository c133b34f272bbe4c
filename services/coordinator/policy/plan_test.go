package policy

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestPlanDefault(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.FixedZone("CET", 3600)) // 09:00 UTC
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		origin        string
		wantNotBefore time.Time
		wantVerify    time.Time
	}{
		{origin: OriginDashboard, wantNotBefore: utc("2026-03-15T09:00:00Z"), wantVerify: utc("2026-04-19T09:00:00Z")},
		{origin: OriginAPI, wantNotBefore: utc("2026-03-01T09:00:00Z"), wantVerify: utc("2026-04-05T09:00:00Z")},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			plan, err := Default().Plan(tt.origin, start)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			type row struct {
				key, action string
				due         time.Time
				calendar    bool
				deps        string
			}
			nb := tt.wantNotBefore
			want := []row{
				{"backups/erase", "suppress", nb, false, "[]"},
				{"backups/verify_rotated", "verify_rotated", tt.wantVerify, false, "[backups/erase]"},
				{"contacts/erase", "delete", nb, false, "[backups/erase]"},
				{"logs/erase", "delete", nb, false, "[backups/erase]"},
				{"billing/erase", "pseudonymise", nb, false, "[backups/erase]"},
				{"billing/delete_retained", "delete_retained", time.Time{}, true, "[billing/erase]"},
			}
			var got []row
			for _, s := range plan {
				got = append(got, row{s.Key().String(), s.Action, s.Due, s.Calendar != nil, fmt.Sprint(s.DependsOn)})
				if !s.NotBefore.Equal(nb) || s.NotBefore.Location() != time.UTC {
					t.Errorf("%s: NotBefore %v, want %v UTC", s.Key(), s.NotBefore, nb)
				}
				if s.LegalBasis == "" {
					t.Errorf("%s: no legal basis", s.Key())
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("plan:\n%v\nwant:\n%v", got, want)
			}
			rule := plan[5].Calendar
			if rule == nil || *rule != (CalendarRule{EndOfYearOf: AnchorInvoiceIssued, PlusYears: 8, Zone: "Europe/Berlin"}) {
				t.Errorf("billing/delete_retained rule %+v", rule)
			}
		})
	}
}

func TestPlanCalendarStage(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	plan, err := Default().Plan(OriginDashboard, start)
	if err != nil {
		t.Fatal(err)
	}
	s := plan[5]
	notBefore := start.Add(14 * Day)
	tests := []struct {
		name   string
		anchor time.Time
		ok     bool
		want   time.Time
	}{
		{
			name:   "issued mid 2024: kept through 2032, due 1 January 2033 in Berlin",
			anchor: time.Date(2024, 6, 15, 0, 0, 0, 0, time.UTC),
			ok:     true,
			want:   time.Date(2032, 12, 31, 23, 0, 0, 0, time.UTC),
		},
		{
			name:   "issued on 31 December 2025 late evening UTC is 2026 in Berlin",
			anchor: time.Date(2025, 12, 31, 23, 30, 0, 0, time.UTC),
			ok:     true,
			want:   time.Date(2034, 12, 31, 23, 0, 0, 0, time.UTC),
		},
		{
			name:   "issued on 1 January 2017: due 1 January 2026, before the grace ends",
			anchor: time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC),
			ok:     true,
			want:   notBefore,
		},
		{
			name: "no invoice kept: due when the grace ends",
			want: notBefore,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.DueFor(tt.anchor, tt.ok)
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("DueFor(%v, %v) = %v, %v; want %v", tt.anchor, tt.ok, got, err, tt.want)
			}
		})
	}
	if got, err := plan[1].DueFor(time.Now(), true); err != nil || !got.Equal(plan[1].Due) {
		t.Errorf("DueFor of an after stage = %v, %v; want its Due %v", got, err, plan[1].Due)
	}
	// The rule agrees with the billing worker's reckoning (billingstore:
	// RetainUntil is 31 December of the year of issue + 8, deletable from
	// the next day in Germany).
	for year := 2017; year <= 2030; year++ {
		due, err := s.Calendar.Due(time.Date(year, 7, 1, 0, 0, 0, 0, time.UTC))
		berlin, _ := time.LoadLocation("Europe/Berlin")
		if want := time.Date(year+9, 1, 1, 0, 0, 0, 0, berlin); err != nil || !due.Equal(want) {
			t.Errorf("issued %d: due %v, %v; want %v", year, due, err, want)
		}
	}
}

func TestPlanOrdersByDependencies(t *testing.T) {
	p, err := Parse([]byte(`version: "1"
grace: {dashboard: 14d, api: 0}
categories:
  - name: contacts
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [backups/erase]}
  - name: logs
    stages:
      - {name: erase, action: delete, after: 30m, legal_basis: batching}
      - {name: again, action: delete, after: 72h, legal_basis: late arrivals}
  - name: backups
    stages:
      - {name: erase, action: suppress, after: 0, depends_on: [logs/erase]}
`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	plan, err := p.Plan(OriginAPI, start)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range plan {
		got = append(got, fmt.Sprintf("%s@%s%v", s.Key(), s.Due.Sub(start), s.DependsOn))
	}
	want := []string{
		"logs/erase@30m0s[]",
		"logs/again@72h0m0s[logs/erase]",
		"backups/erase@0s[logs/erase]",
		"contacts/erase@0s[backups/erase]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan %v, want %v", got, want)
	}
	// That the coordinator can make a job of every plan (dependencies
	// first) is tested in package app (TestPlanFromPolicy).
}

func TestPlanUnknownOrigin(t *testing.T) {
	_, err := Default().Plan("email", time.Now())
	if !errors.Is(err, ErrUnknownOrigin) {
		t.Fatalf("Plan(email) = %v, want ErrUnknownOrigin", err)
	}
}
