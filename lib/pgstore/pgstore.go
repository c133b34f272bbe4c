// Package pgstore holds what every PostgreSQL store of Lethe does the same
// way before it can do its own work: connect to its database so that a
// wrong DSN fails at start-up with advice and without the password, and
// bring its schema up to the version the binary embeds, safely when several
// replicas start at once and never downwards. The contacts and billing
// stores and the backups' restore ledger each own a database and a schema;
// keeping these rules in one place keeps them the same for all of them.
//
// Errors name the database by the what argument ("contacts" gives "reach
// contacts database: ..."). Migrate's errors name no database: the store
// wraps them with its own.
package pgstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// ErrSchemaNewer is wrapped by Migrate's error when the database is at a
// newer schema version than the migrations it was given: a newer release
// migrated it, and this binary must not run against it.
var ErrSchemaNewer = errors.New("the schema is newer than this binary")

// closeTimeout bounds closing Migrate's dedicated connection, which also
// runs when the caller's context is already cancelled.
const closeTimeout = 5 * time.Second

// Open connects to the what database at dsn (a PostgreSQL URL or key=value
// string; pool settings such as pool_max_conns go there too) and checks
// that it answers. It does not migrate: call Migrate.
//
// When the database cannot be reached the error says what to check. No
// error repeats the password of the DSN.
func Open(ctx context.Context, dsn, what string) (*pgxpool.Pool, error) {
	// pgconn redacts the password in its parse errors.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse %s database dsn: %w%s", what, err, tlsHint(err))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create %s database pool: %w", what, err)
	}
	// The pool connects lazily; ping now so that a wrong DSN fails at
	// start-up with advice, not at the first query.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		if hint := tlsHint(err); hint != "" {
			return nil, fmt.Errorf("reach %s database: %w%s", what, err, hint)
		}
		// pgconn's error names host, port, user and database already.
		return nil, fmt.Errorf("reach %s database: %w (check that PostgreSQL is running and "+
			"reachable from here, and that host, port, user, password and database in the DSN are right)", what, err)
	}
	return pool, nil
}

// tlsHint says what to check when err is about TLS: the DSN's ssl
// parameters (pgx reads sslmode, sslrootcert, sslcert, sslkey and
// sslpassword from the URL), or the server's certificate. Otherwise it
// returns "".
func tlsHint(err error) string {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	msg := err.Error()
	switch {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), strings.Contains(msg, "x509: "):
		return " (the server's certificate does not verify: with sslmode=verify-full or verify-ca, sslrootcert must name " +
			"the CA that signed it, and for verify-full the certificate must carry the DSN's host)"
	case strings.Contains(msg, "failed to configure TLS"), strings.Contains(msg, "sslmode"):
		return " (check the DSN's TLS parameters: sslmode is one of disable, allow, prefer, require, verify-ca or verify-full; " +
			"sslrootcert, sslcert and sslkey name readable PEM files, sslcert and sslkey together)"
	case strings.Contains(msg, "server refused TLS connection"):
		return " (the server does not offer TLS: turn ssl on in postgresql.conf, or lower sslmode)"
	}
	return ""
}

// Ping checks that the what database answers, for readiness probes.
func Ping(ctx context.Context, pool *pgxpool.Pool, what string) error {
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping %s database: %w", what, err)
	}
	return nil
}

// Migrate brings the schema up to the newest of the tern migrations at the
// root of migrations ("001_name.sql", ...; fs.Sub gives the root of an
// embedded directory), recording the applied version in versionTable. It is idempotent, and safe when several replicas start
// at once: tern holds a PostgreSQL session advisory lock
// (pg_advisory_lock) while it reads the current version and applies what
// is missing, so the others wait and then find nothing to do. Each
// migration runs in its own transaction.
//
// Migrate runs on a connection of its own that it takes out of the pool
// and closes afterwards: the advisory lock belongs to the session, and if
// tern cannot release it (ctx cancelled mid-migration) only closing the
// session does. A pooled connection would keep the lock and block every
// later migration.
//
// When the database is at a newer version than migrations know, Migrate
// changes nothing and returns an error wrapping ErrSchemaNewer.
func Migrate(ctx context.Context, pool *pgxpool.Pool, migrations fs.FS, versionTable string) error {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()

	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return fmt.Errorf("create version table: %w", err)
	}
	if err := m.LoadMigrations(migrations); err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		if _, ok := errors.AsType[migrate.BadVersionError](err); ok {
			return fmt.Errorf("%w (%w: deploy the newer release)", err, ErrSchemaNewer)
		}
		return err
	}
	return nil
}
