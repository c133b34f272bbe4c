package redact

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Withheld replaces what a database server wrote into an error message.
const Withheld = "[message withheld: it may quote data]"

// Error returns err with the server-written message of every PostgreSQL
// error in its chain withheld: such a message can quote the values of a
// row ("invalid input syntax ...: \"alice@example.com\"", or a trigger's
// RAISE EXCEPTION with the row's name), and a purge error becomes a log
// line, a task report, a dead letter and a lifecycle event. What the
// program wrote around it, the SQLSTATE and the names of the table,
// column and constraint stay. The result unwraps to err, so errors.Is and
// errors.As see the same chain; nil stays nil, and an error without a
// PostgreSQL error is returned as it is.
func Error(err error) error {
	if err == nil {
		return nil
	}
	pgErrs := postgresErrors(err, nil)
	if len(pgErrs) == 0 {
		return err
	}
	text := err.Error()
	for _, pg := range pgErrs {
		safe := pg.Severity + ": " + Withheld + names(pg) + " (SQLSTATE " + pg.Code + ")"
		switch {
		case strings.Contains(text, pg.Error()):
			text = strings.ReplaceAll(text, pg.Error(), safe)
		case pg.Message != "":
			text = strings.ReplaceAll(text, pg.Message, Withheld)
		}
	}
	return &withheldError{text: text, err: err}
}

type withheldError struct {
	text string
	err  error
}

func (e *withheldError) Error() string { return e.text }
func (e *withheldError) Unwrap() error { return e.err }

// postgresErrors collects every *pgconn.PgError in err's tree.
func postgresErrors(err error, out []*pgconn.PgError) []*pgconn.PgError {
	if err == nil {
		return out
	}
	if pg, ok := err.(*pgconn.PgError); ok {
		return append(out, pg)
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return postgresErrors(u.Unwrap(), out)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = postgresErrors(e, out)
		}
	}
	return out
}

// names lists the schema objects a PostgreSQL error names: identifiers,
// never data.
func names(pg *pgconn.PgError) string {
	var parts []string
	if pg.TableName != "" {
		parts = append(parts, "table "+pg.TableName)
	}
	if pg.ColumnName != "" {
		parts = append(parts, "column "+pg.ColumnName)
	}
	if pg.ConstraintName != "" {
		parts = append(parts, "constraint "+pg.ConstraintName)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
