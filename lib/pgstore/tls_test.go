package pgstore

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/tlsfiles/tlstest"
)

// TestOpenTLSSettings covers the TLS parameters pgx reads from the DSN
// (sslmode, sslrootcert, sslcert, sslkey): a mistake fails at Open with an
// error that says what to check, and sslmode=require reaches a server that
// offers TLS over TLS.
func TestOpenTLSSettings(t *testing.T) {
	t.Parallel()
	base, err := url.Parse(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	pki := tlstest.New(t)
	with := func(params map[string]string) string {
		u := *base
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tests := []struct {
		name     string
		params   map[string]string
		wantText []string
	}{
		{name: "unknown sslmode", params: map[string]string{"sslmode": "sometimes"},
			wantText: []string{"parse widgets database dsn", "sslmode is invalid", "sslmode is one of disable, allow, prefer, require, verify-ca or verify-full"}},
		{name: "missing root certificate file", params: map[string]string{"sslmode": "verify-full", "sslrootcert": "/does/not/exist.pem"},
			wantText: []string{"unable to read CA file", "readable PEM files"}},
		{name: "client certificate without its key", params: map[string]string{"sslmode": "require", "sslcert": pki.ClientCert},
			wantText: []string{`both "sslcert" and "sslkey" are required`}},
		{name: "server certificate signed by another CA", params: map[string]string{"sslmode": "verify-full", "sslrootcert": pki.CA},
			wantText: []string{"reach widgets database", "certificate does not verify", "sslrootcert must name the CA"}},
	}
	offersTLS := serverOffersTLS(ctx, t, base.String())
	if !offersTLS {
		// The rows above are about the client's settings, except the last,
		// which needs a server that offers TLS.
		tests = tests[:3]
		t.Log("the test PostgreSQL has ssl off: the server-certificate row is left out (turn ssl on to run it)")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := Open(ctx, with(tt.params), "widgets")
			if err == nil {
				pool.Close()
				t.Fatal("Open succeeded, want an error")
			}
			for _, want := range tt.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open error = %q, want it to contain %q", err, want)
				}
			}
		})
	}

	t.Run("sslmode=require", func(t *testing.T) {
		if !offersTLS {
			t.Skip("the test PostgreSQL has ssl off (Debian's package turns it on with its snakeoil certificate)")
		}
		pool, err := Open(ctx, with(map[string]string{"sslmode": "require"}), "widgets")
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var ssl bool
		if err := pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
			t.Fatal(err)
		}
		if !ssl {
			t.Error("sslmode=require connected without TLS")
		}
	})
}

func serverOffersTLS(ctx context.Context, t *testing.T, dsn string) bool {
	t.Helper()
	pool := openPool(t, dsn)
	var on string
	if err := pool.QueryRow(ctx, "SHOW ssl").Scan(&on); err != nil {
		t.Fatal(err)
	}
	return on == "on"
}
