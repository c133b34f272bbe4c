package billingstore

import (
	"time"
	// The retention rules reckon days in Germany's time zone; embed the
	// zone database so that a container without /usr/share/zoneinfo works.
	_ "time/tzdata"
)

// RetentionYears is how long an invoice is kept: accounting vouchers
// (Buchungsbelege) 8 years under AO §147(3) sentence 1 and HGB §257(4), as
// amended by the Viertes Bürokratieentlastungsgesetz (in force 1 January
// 2025, for every voucher whose 10-year period had not ended by then). The
// period starts at the end of the calendar year of issue (AO §147(4), HGB
// §257(5)).
//
// It is the regular end. The period does not end while the invoice still
// matters for a tax assessment whose limitation period runs (AO §147(3)
// sentence 5), e.g. during a tax audit: that is a legal hold, which the
// coordinator applies to the job, not a date this store can compute.
const RetentionYears = 8

// retentionZone is where a day begins and ends for the retention rules:
// the law is German, and so is the end of a calendar year.
var retentionZone = mustLoadZone("Europe/Berlin")

func mustLoadZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		// Cannot happen: time/tzdata is embedded.
		panic("load time zone " + name + ": " + err.Error())
	}
	return loc
}

// RetainUntil is the last day an invoice issued on the given day must be
// kept: 31 December of the year of issue plus RetentionYears. It may be
// deleted from the next day on (DeletableFrom). Only the calendar date of
// issued counts (its year, month and day in its own location); the result
// is midnight UTC of that date, the form pgx uses for a PostgreSQL date.
//
// Issued on 1 January 2017 or on 31 December 2017: kept until 31 December
// 2025, deletable from 1 January 2026.
func RetainUntil(issued time.Time) time.Time {
	return time.Date(issued.Year()+RetentionYears, time.December, 31, 0, 0, 0, 0, time.UTC)
}

// DeletableFrom is the first day an invoice issued on the given day may be
// deleted: the day after RetainUntil.
func DeletableFrom(issued time.Time) time.Time {
	return RetainUntil(issued).AddDate(0, 0, 1)
}

// Today is the calendar date at instant now in Germany, as midnight UTC.
// An invoice is deletable when its retain_until is before Today.
func Today(now time.Time) time.Time {
	y, m, d := now.In(retentionZone).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
