package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Day is the length of the "d" unit: 24 hours of elapsed time.
const Day = 24 * time.Hour

// MaxAfter bounds a stage's or a grace period's duration: 100 years of
// days. Nothing in the schedule waits that long; longer values are typos.
const MaxAfter = 36500 * Day

// units are the only duration units, largest first (FormatDuration picks
// the largest that divides the value).
var units = []struct {
	suffix string
	d      time.Duration
}{
	{"d", Day},
	{"h", time.Hour},
	{"m", time.Minute},
	{"s", time.Second},
}

// ParseDuration reads a schedule duration: "0", or a whole number followed
// by one unit — s, m, h or d (d is exactly 24 hours of elapsed time, not a
// calendar day). Compound ("1d12h"), fractional, signed and month or year
// forms are rejected: a month or a year has no fixed length, and the
// schedule's calendar reckoning is written as a calendar rule instead.
func ParseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("negative duration %q: a stage cannot run before the erasure starts", s)
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], s[i:]
	if num == "" {
		return 0, fmt.Errorf("duration %q: want a whole number and a unit (s, m, h, d), e.g. 14d", s)
	}
	switch unit {
	case "y", "yr", "year", "years", "mo", "month", "months", "M":
		return 0, fmt.Errorf("duration %q: months and years have no fixed length; write days (e.g. 365d) or use a calendar rule", s)
	case "w":
		return 0, fmt.Errorf("duration %q: write weeks as days (e.g. 14d)", s)
	}
	var per time.Duration
	for _, u := range units {
		if u.suffix == unit {
			per = u.d
		}
	}
	if per == 0 {
		return 0, fmt.Errorf("duration %q: unknown unit %q (want s, m, h or d)", s, unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > int64(MaxAfter/per) {
		return 0, fmt.Errorf("duration %q is longer than %s", s, FormatDuration(MaxAfter))
	}
	return time.Duration(n) * per, nil
}

// FormatDuration writes d in the form ParseDuration reads, in the largest
// unit that divides it. Durations that are not whole seconds, or are
// negative, are written as Go durations, which ParseDuration rejects.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	if d < 0 || d%time.Second != 0 {
		return d.String()
	}
	for _, u := range units {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.suffix
		}
	}
	return d.String() // unreachable: every whole second matches "s"
}
