package backupstore

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultAccountColumn is the column that holds account ids unless a
// Database says otherwise.
const DefaultAccountColumn = "account_id"

// Source is what one snapshot copies: any number of named databases, and
// optionally the log segment tree.
type Source struct {
	Databases []Database
	Logs      *LogsSource
}

// Database is one PostgreSQL database to dump.
type Database struct {
	// Name names the dump inside the snapshot and in RestoreTarget:
	// lower-case letters, digits, '_' and '-', at most 63 characters
	// ("contacts", "billing").
	Name string
	// DSN is the database's PostgreSQL URL or key=value string. A URL's
	// password is passed to pg_dump through the environment, never on its
	// command line.
	DSN string
	// Tables are where the database keeps account data. The snapshot's
	// account set is every distinct account id they yield, read in the same
	// transaction snapshot as the dump, so it is exactly what the dump
	// holds. List every table with personal data: an account missing from
	// the catalog is still re-applied by a restore when its erasure is newer
	// than the snapshot, but verify_rotated cannot see it.
	Tables []AccountTable
}

// AccountTable is a table that holds account data.
type AccountTable struct {
	// Name is "table" or "schema.table", quoted as given (case matters).
	Name string
	// Column holds the account id; default DefaultAccountColumn. Any type
	// is read as text.
	Column string
	// Where, optional, is an SQL condition on the table's rows that selects
	// those with personal data, for tables that keep rows after erasure:
	// "erased_at IS NULL" for a tombstone, "pseudonymised_at IS NULL" for a
	// retained invoice. It is one expression, without ';' or comments. It
	// is stored in the catalog and evaluated again, read-only, on restored
	// copies.
	Where string
}

// Tables is shorthand for tables with the default account column and no
// condition.
func Tables(names ...string) []AccountTable {
	out := make([]AccountTable, len(names))
	for i, n := range names {
		out[i] = AccountTable{Name: n}
	}
	return out
}

func (t AccountTable) withDefaults() AccountTable {
	if t.Column == "" {
		t.Column = DefaultAccountColumn
	}
	return t
}

// LogsSource is the log segment tree, written to by another service while
// it is copied.
type LogsSource struct {
	// Dir is the root of the log segment tree.
	Dir string
	// Accounts lists the accounts that the tree holds data of. It is called
	// before and after the copy and the union is catalogued, so that an
	// account whose data is appended or removed during the copy is not
	// missed.
	Accounts func(ctx context.Context) ([]string, error)
}

func (src Source) validate() error {
	if len(src.Databases) == 0 && src.Logs == nil {
		return fmt.Errorf("%w: neither databases nor logs", ErrInvalidSource)
	}
	seen := map[string]bool{}
	for i, db := range src.Databases {
		switch {
		case !namePattern.MatchString(db.Name):
			return fmt.Errorf("%w: database %d: name %q must be lower-case letters, digits, '_' or '-' (at most 63)", ErrInvalidSource, i, db.Name)
		case seen[db.Name]:
			return fmt.Errorf("%w: database name %q given twice", ErrInvalidSource, db.Name)
		case db.DSN == "":
			return fmt.Errorf("%w: database %s: empty DSN", ErrInvalidSource, db.Name)
		case len(db.Tables) == 0:
			return fmt.Errorf("%w: database %s: no tables with account ids (the catalog must know which accounts the dump holds)", ErrInvalidSource, db.Name)
		}
		seen[db.Name] = true
		for j, t := range db.Tables {
			if err := t.withDefaults().check(); err != nil {
				return fmt.Errorf("%w: database %s: table %d: %w", ErrInvalidSource, db.Name, j, err)
			}
		}
	}
	if l := src.Logs; l != nil {
		if l.Dir == "" || l.Accounts == nil {
			return fmt.Errorf("%w: logs need a directory and an account lister", ErrInvalidSource)
		}
		st, err := os.Stat(l.Dir)
		if err != nil {
			return fmt.Errorf("%w: logs directory: %w", ErrInvalidSource, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("%w: logs directory %s is not a directory", ErrInvalidSource, l.Dir)
		}
	}
	return nil
}

// TakeSnapshot copies src into a new snapshot and catalogues it: each
// database with pg_dump -Fc, together with the account ids it holds (read
// in the dump's own transaction snapshot), and the log tree as a tar file
// together with the accounts its lister names. Files are fsynced; the
// catalog entry is written last and atomically, so the snapshot exists
// exactly when TakeSnapshot returns it.
//
// On failure nothing is catalogued and the partial files are removed (a
// crash leaves an incomplete directory that Rotate removes). The error
// wraps ErrInvalidSource for a bad src, ErrInvalidAccountID when a source
// yields something that cannot be an account id (a value that may be
// personal data never reaches the catalog), and says which database or
// step failed otherwise; it never quotes a DSN or row data.
func (s *Store) TakeSnapshot(ctx context.Context, src Source) (Snapshot, error) {
	if err := src.validate(); err != nil {
		return Snapshot{}, err
	}
	lock, err := s.lockShared(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	defer lock.unlock()

	created := s.now().UTC().Truncate(time.Second)
	snap := Snapshot{ID: newID(created), CreatedAt: created}
	dir := s.dataDir(snap.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return Snapshot{}, fmt.Errorf("create snapshot directory: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(dir)
		}
	}()

	accounts := map[string]bool{}
	for _, db := range src.Databases {
		dump, ids, err := s.dumpDatabase(ctx, db, filepath.Join(dir, db.Name+dumpSuffix))
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot %s: %w", snap.ID, err)
		}
		snap.Databases = append(snap.Databases, dump)
		for _, id := range ids {
			accounts[id] = true
		}
	}
	if src.Logs != nil {
		archive, ids, err := archiveLogs(ctx, *src.Logs, filepath.Join(dir, logsFileName))
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot %s: %w", snap.ID, err)
		}
		snap.Logs = &archive
		for _, id := range ids {
			accounts[id] = true
		}
	}
	if err := syncDir(dir); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: sync directory: %w", snap.ID, err)
	}
	if err := syncDir(s.snapshotsDir()); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: sync directory: %w", snap.ID, err)
	}

	snap.Accounts = make([]string, 0, len(accounts))
	for id := range accounts {
		snap.Accounts = append(snap.Accounts, id)
	}
	slices.Sort(snap.Accounts)
	snap.CompletedAt = s.now().UTC()
	if snap.CompletedAt.Before(snap.CreatedAt) { // the clock stepped back
		snap.CompletedAt = snap.CreatedAt
	}
	data, err := encodeManifest(snap)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", snap.ID, err)
	}
	if err := writeFileAtomic(s.catalogDir(), snap.ID+manifestSuffix, data); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: write catalog entry: %w", snap.ID, err)
	}
	done = true
	return snap, nil
}

// dumpDatabase dumps db to path and lists its accounts from the same
// transaction snapshot: this session exports its snapshot, reads the
// account ids, and keeps the transaction open while pg_dump --snapshot
// reads through it.
func (s *Store) dumpDatabase(ctx context.Context, db Database, path string) (DatabaseDump, []string, error) {
	dump := DatabaseDump{Name: db.Name, Tables: make([]AccountTable, len(db.Tables))}
	for i, t := range db.Tables {
		dump.Tables[i] = t.withDefaults()
	}
	conn, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		// pgconn's error names host and database and redacts the password.
		return dump, nil, fmt.Errorf("connect to database %s: %w", db.Name, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	// The session sits idle in its transaction while pg_dump runs.
	if _, err := conn.Exec(ctx, "SET idle_in_transaction_session_timeout = 0"); err != nil {
		return dump, nil, fmt.Errorf("prepare dump of database %s: %w", db.Name, err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return dump, nil, fmt.Errorf("begin dump of database %s: %w", db.Name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var pgSnapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&pgSnapshot); err != nil {
		return dump, nil, fmt.Errorf("export transaction snapshot of database %s: %w", db.Name, err)
	}
	ids, err := listAccounts(ctx, tx, db.Name, dump.Tables)
	if err != nil {
		return dump, nil, err
	}
	if err := s.pgTool(ctx, "pg_dump", db.Name, db.DSN, "--format=custom", "--snapshot="+pgSnapshot, "--file="+path); err != nil {
		return dump, nil, err
	}
	dump.Size, dump.SHA256, err = syncAndHash(path)
	if err != nil {
		return dump, nil, fmt.Errorf("dump of database %s: %w", db.Name, err)
	}
	return dump, ids, nil
}

// accountsSQL selects the distinct account ids of the tables' rows with
// personal data; with filter, only those among $1.
func accountsSQL(tables []AccountTable, filter bool) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		t = t.withDefaults()
		col := pgx.Identifier{t.Column}.Sanitize()
		cond := col + " IS NOT NULL"
		if filter {
			cond = col + "::text = ANY($1::text[])"
		}
		if t.Where != "" {
			cond += " AND (" + t.Where + ")"
		}
		parts[i] = fmt.Sprintf("SELECT %s::text FROM %s WHERE %s", col, tableIdentifier(t.Name).Sanitize(), cond)
	}
	return strings.Join(parts, " UNION ")
}

func tableIdentifier(t string) pgx.Identifier {
	if schema, table, ok := strings.Cut(t, "."); ok {
		return pgx.Identifier{schema, table}
	}
	return pgx.Identifier{t}
}

// queryer is what listAccounts needs of a connection or transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func listAccounts(ctx context.Context, q queryer, database string, tables []AccountTable) ([]string, error) {
	rows, err := q.Query(ctx, accountsSQL(tables, false))
	if err != nil {
		return nil, fmt.Errorf("list accounts of database %s: %w", database, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list accounts of database %s: %w", database, err)
	}
	for _, id := range ids {
		if err := checkAccountID(id); err != nil {
			return nil, fmt.Errorf("list accounts of database %s: %w", database, err)
		}
	}
	return ids, nil
}

// archiveLogs writes the log tree into a tar file at dst, between two calls
// of the account lister.
func archiveLogs(ctx context.Context, src LogsSource, dst string) (LogsArchive, []string, error) {
	before, err := listLogAccounts(ctx, src)
	if err != nil {
		return LogsArchive{}, nil, err
	}
	archive, err := writeTar(ctx, src.Dir, dst)
	if err != nil {
		return LogsArchive{}, nil, fmt.Errorf("copy log tree: %w", err)
	}
	after, err := listLogAccounts(ctx, src)
	if err != nil {
		return LogsArchive{}, nil, err
	}
	return archive, append(before, after...), nil
}

func listLogAccounts(ctx context.Context, src LogsSource) ([]string, error) {
	ids, err := src.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list accounts of the log tree: %w", err)
	}
	for _, id := range ids {
		if err := checkAccountID(id); err != nil {
			return nil, fmt.Errorf("list accounts of the log tree: %w", err)
		}
	}
	return ids, nil
}

// writeTar copies the regular files and directories under dir into a tar
// file at dst and fsyncs it. The tree is being written while it is read:
// a file removed after it was listed is skipped, a file that grows is
// copied up to the size it had when it was opened (append-only segments
// keep a consistent prefix), and a file that shrinks fails the copy.
// Symbolic links and special files are not copied.
func writeTar(ctx context.Context, dir, dst string) (LogsArchive, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return LogsArchive{}, err
	}
	defer f.Close()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	tw := tar.NewWriter(cw)
	var files int
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil // removed while we walked
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()})
		case d.Type().IsRegular():
			n, err := addFile(tw, path, name)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			files += n
			return err
		default:
			return nil
		}
	})
	if err != nil {
		return LogsArchive{}, err
	}
	if err := tw.Close(); err != nil {
		return LogsArchive{}, err
	}
	if err := f.Sync(); err != nil {
		return LogsArchive{}, err
	}
	if err := f.Close(); err != nil {
		return LogsArchive{}, err
	}
	return LogsArchive{Files: files, Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func addFile(tw *tar.Writer, path, name string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, nil
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size(), Mode: int64(st.Mode().Perm()), ModTime: st.ModTime()}); err != nil {
		return 0, err
	}
	if _, err := io.CopyN(tw, f, st.Size()); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("log file %s: %w", name, errShortCopy)
		}
		return 0, err
	}
	return 1, nil
}

var errShortCopy = errors.New("file shrank while it was copied")

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// syncAndHash fsyncs the file at path and returns its size and SHA-256.
func syncAndHash(path string) (int64, string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, "", err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// hashFile returns the size and SHA-256 of the file at path.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
