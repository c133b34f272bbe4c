package redact

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestErrorWithholdsWhatPostgresQuoted(t *testing.T) {
	const secret = "alice@example.com"
	pg := &pgconn.PgError{Severity: "ERROR", Code: "P0001", Message: "refusing to change customer " + secret, TableName: "customers"}
	tests := []struct {
		name     string
		give     error
		wantText string
	}{
		{name: "wrapped", give: fmt.Errorf("pseudonymise billing data of account acct-1: erase customer: %w", pg),
			wantText: "pseudonymise billing data of account acct-1: erase customer: ERROR: " + Withheld + " (table customers) (SQLSTATE P0001)"},
		{name: "joined", give: errors.Join(errors.New("first"), fmt.Errorf("second: %w", pg)),
			wantText: "first\nsecond: ERROR: " + Withheld + " (table customers) (SQLSTATE P0001)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Error(tt.give)
			if strings.Contains(got.Error(), secret) || got.Error() != tt.wantText {
				t.Errorf("Error() = %q, want %q", got.Error(), tt.wantText)
			}
		})
	}
	// %v flattens the chain into text, which Error can no longer see
	// into: apply Error first, then format.
	if got := fmt.Sprintf("gave up: %v", Error(fmt.Errorf("x: %w", pg))); strings.Contains(got, secret) {
		t.Errorf("formatted after Error: %q", got)
	}
	wrapped := fmt.Errorf("purge: %w", pg)
	var as *pgconn.PgError
	if got := Error(wrapped); !errors.As(got, &as) || !errors.Is(got, pg) {
		t.Error("Error() hides the chain from errors.As and errors.Is")
	}
	plain := context.DeadlineExceeded
	if Error(plain) != plain || Error(nil) != nil {
		t.Error("an error without a PostgreSQL error must come back unchanged")
	}
}
