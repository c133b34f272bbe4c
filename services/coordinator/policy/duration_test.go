package policy

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		give    string
		want    time.Duration
		wantErr string
	}{
		{give: "0", want: 0},
		{give: "0d", want: 0},
		{give: "45s", want: 45 * time.Second},
		{give: "30m", want: 30 * time.Minute},
		{give: "72h", want: 72 * time.Hour},
		{give: "14d", want: 14 * Day},
		{give: "35d", want: 35 * Day},
		{give: "36500d", want: MaxAfter},
		{give: "36501d", wantErr: "longer than 36500d"},
		{give: "99999999999999999999d", wantErr: "longer than 36500d"},
		{give: "-1d", wantErr: "negative duration"},
		{give: "-0", wantErr: "negative duration"},
		{give: "8y", wantErr: "months and years have no fixed length"},
		{give: "1mo", wantErr: "months and years have no fixed length"},
		{give: "2w", wantErr: "write weeks as days"},
		{give: "1d12h", wantErr: "unknown unit"},
		{give: "1.5d", wantErr: "unknown unit"},
		{give: "+1d", wantErr: "want a whole number and a unit"},
		{give: "d", wantErr: "want a whole number and a unit"},
		{give: "", wantErr: "want a whole number and a unit"},
		{give: "14", wantErr: "unknown unit"},
		{give: "14D", wantErr: "unknown unit"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseDuration(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tt.give, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.give, got, err, tt.want)
			}
		})
	}
}

func TestFormatDurationRoundTrips(t *testing.T) {
	tests := []struct {
		give time.Duration
		want string
	}{
		{0, "0"},
		{time.Second, "1s"},
		{90 * time.Second, "90s"},
		{30 * time.Minute, "30m"},
		{72 * time.Hour, "3d"},
		{25 * time.Hour, "25h"},
		{35 * Day, "35d"},
	}
	for _, tt := range tests {
		got := FormatDuration(tt.give)
		if got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.give, got, tt.want)
		}
		back, err := ParseDuration(got)
		if err != nil || back != tt.give {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", got, back, err, tt.give)
		}
	}
}
