package pgstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-privacy/lethe/lib/testenv"
)

const versionTable = "widgetstore_schema_version"

// widgetMigrations are the first n migrations of a small schema.
func widgetMigrations(n int) fstest.MapFS {
	all := []struct{ name, sql string }{
		{"001_widgets.sql", "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);"},
		{"002_widget_parts.sql", "CREATE TABLE widget_parts (widget_id bigint NOT NULL REFERENCES widgets (id), part text NOT NULL);"},
	}
	fsys := fstest.MapFS{}
	for _, m := range all[:n] {
		fsys[m.name] = &fstest.MapFile{Data: []byte(m.sql)}
	}
	return fsys
}

// openPool opens a pool on dsn and closes it when the test ends.
func openPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := Open(ctx, dsn, "widgets")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// migratedPool gives the test a pool on a database of its own, migrated to
// both widget migrations.
func migratedPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := openPool(t, testenv.Postgres(t))
	if err := Migrate(context.Background(), pool, widgetMigrations(2), versionTable); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return pool
}

func schemaVersion(t testing.TB, pool *pgxpool.Pool) int32 {
	t.Helper()
	var v int32
	if err := pool.QueryRow(context.Background(), "SELECT version FROM "+versionTable).Scan(&v); err != nil {
		t.Fatalf("read schema version: %v", err)
	}
	return v
}

// useTables fails the test unless both widget tables are there.
func useTables(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), "SELECT count(*) FROM widgets JOIN widget_parts ON widget_id = id"); err != nil {
		t.Errorf("use the migrated tables: %v", err)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	tests := []struct {
		name     string
		dsn      string
		wantText []string
	}{
		{name: "valid", dsn: dsn},
		{name: "malformed dsn", dsn: "postgres://lethe:s3cret@%zz/widgets", wantText: []string{"parse widgets database dsn"}},
		{
			name: "unreachable", dsn: "postgres://lethe:s3cret@127.0.0.1:1/widgets?connect_timeout=2",
			wantText: []string{"reach widgets database", "check that PostgreSQL is running"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pool, err := Open(ctx, tt.dsn, "widgets")
			if tt.wantText == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer pool.Close()
				if err := Ping(ctx, pool, "widgets"); err != nil {
					t.Fatalf("Ping: %v", err)
				}
				return
			}
			if err == nil {
				pool.Close()
				t.Fatal("Open succeeded, want an error")
			}
			for _, want := range tt.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open error = %q, want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Open error %q reveals the password", err)
			}
		})
	}
}

func TestPingNamesTheDatabase(t *testing.T) {
	t.Parallel()
	pool := openPool(t, testenv.Postgres(t))
	pool.Close()
	err := Ping(context.Background(), pool, "widgets")
	if err == nil || !strings.HasPrefix(err.Error(), "ping widgets database: ") {
		t.Errorf("Ping of a closed pool = %v, want an error naming the widgets database", err)
	}
}

// A release with a new migration applies only that one; migrating again
// changes nothing.
func TestMigrateAppliesWhatIsMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := openPool(t, testenv.Postgres(t))
	for i, n := range []int{1, 2, 2} {
		if err := Migrate(ctx, pool, widgetMigrations(n), versionTable); err != nil {
			t.Fatalf("Migrate %d with %d migrations: %v", i+1, n, err)
		}
		if v := schemaVersion(t, pool); v != int32(n) {
			t.Errorf("after Migrate %d: schema version = %d, want %d", i+1, v, n)
		}
	}
	useTables(t, pool)
}

// Replicas of a worker start together and all migrate: tern's advisory
// lock must let exactly one apply the schema while the others wait and then
// find nothing to do.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	const replicas = 6
	pools := make([]*pgxpool.Pool, replicas)
	for i := range pools {
		pools[i] = openPool(t, dsn)
	}
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	start := make(chan struct{})
	for i, pool := range pools {
		wg.Go(func() {
			<-start
			errs[i] = Migrate(context.Background(), pool, widgetMigrations(2), versionTable)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Migrate: %v", i, err)
		}
	}
	var rows int
	if err := pools[0].QueryRow(context.Background(), "SELECT count(*) FROM "+versionTable).Scan(&rows); err != nil {
		t.Fatalf("count version rows: %v", err)
	}
	if rows != 1 {
		t.Errorf("version table has %d rows, want 1", rows)
	}
	if v := schemaVersion(t, pools[0]); v != 2 {
		t.Errorf("schema version = %d, want 2", v)
	}
	useTables(t, pools[0])
}

// A binary must refuse a schema newer than it knows instead of migrating it
// down, which would drop the tables.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	err := Migrate(context.Background(), pool, widgetMigrations(1), versionTable)
	if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), "deploy the newer release") {
		t.Fatalf("Migrate with fewer migrations = %v, want an error wrapping ErrSchemaNewer that says what to do", err)
	}
	if v := schemaVersion(t, pool); v != 2 {
		t.Errorf("schema version = %d after the refusal, want 2 unchanged", v)
	}
	useTables(t, pool)
}

func TestMigrateFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		migrations fstest.MapFS
		wantText   string
	}{
		{name: "no migrations", migrations: fstest.MapFS{}, wantText: "load migrations"},
		{name: "missing migration", migrations: fstest.MapFS{"002_x.sql": {Data: []byte("SELECT 1")}}, wantText: "load migrations"},
		{name: "failing migration", migrations: fstest.MapFS{"001_x.sql": {Data: []byte("CREATE TABLE widgets (id no_such_type)")}}, wantText: "no_such_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := openPool(t, testenv.Postgres(t))
			err := Migrate(context.Background(), pool, tt.migrations, versionTable)
			if err == nil || !strings.Contains(err.Error(), tt.wantText) || errors.Is(err, ErrSchemaNewer) {
				t.Fatalf("Migrate = %v, want an error about %q", err, tt.wantText)
			}
			if v := schemaVersion(t, pool); v != 0 {
				t.Errorf("schema version = %d after a failed migration, want 0", v)
			}
		})
	}
}

// A replica stopped mid-migration must not leave tern's advisory lock
// behind, or the next Migrate (the restarted replica) would wait forever.
// tern cannot release the lock with the cancelled context; what frees it
// is the end of the session (Migrate closes its own connection, and pgx
// also drops a connection whose query was cancelled). The migration runs
// outside a transaction so that the pool's own safety net, which discards
// connections left inside one, plays no part.
func TestMigrateCancelledLeavesNoLockBehind(t *testing.T) {
	t.Parallel()
	pool := openPool(t, testenv.Postgres(t))
	slow := fstest.MapFS{"001_slow.sql": {Data: []byte("---- tern: disable-tx ----\nSELECT pg_sleep(30);")}}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := Migrate(ctx, pool, slow, versionTable); err == nil {
		t.Fatal("Migrate of a cancelled context succeeded")
	}

	locks := -1
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks)
		if err != nil {
			t.Fatalf("count advisory locks: %v", err)
		}
		if locks == 0 {
			break
		}
	}
	if locks != 0 {
		t.Errorf("%d advisory locks held after the cancelled Migrate, want 0", locks)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := Migrate(ctx2, pool, widgetMigrations(2), versionTable); err != nil {
		t.Fatalf("Migrate after the cancelled one: %v", err)
	}
	useTables(t, pool)
}
