package backupstore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reapplier re-applies erasures to restored data. The caller builds it
// with the purges of every store in the restore target (contacts, billing,
// logs), pointed at the restored copies, not the live ones.
//
// Reapply must erase every listed account from all restored data, or
// return an error. It is called once per restore, with the accounts sorted;
// the accounts may hold nothing in the snapshot (re-applying is idempotent
// and cheap then).
type Reapplier interface {
	Reapply(ctx context.Context, accountIDs []string) error
}

// ReapplierFunc adapts a function to Reapplier.
type ReapplierFunc func(ctx context.Context, accountIDs []string) error

// Reapply calls f.
func (f ReapplierFunc) Reapply(ctx context.Context, accountIDs []string) error {
	return f(ctx, accountIDs)
}

// RestoreTarget says where a snapshot is restored to.
type RestoreTarget struct {
	// Databases maps a database name in the snapshot to the DSN of a new,
	// empty database to restore it into. The snapshot's other databases are
	// not restored.
	Databases map[string]string
	// LogsDir is where the log tree is restored: a directory that does not
	// exist or is empty. Empty: the logs are not restored.
	LogsDir string
	// LogsAccounts, optional, lists the accounts that the log tree in dir
	// holds. When set, Restore checks with it that re-application left no
	// erased account in the restored logs.
	LogsAccounts func(ctx context.Context, dir string) ([]string, error)
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	SnapshotID string
	// Databases are the names of the databases restored, sorted.
	Databases []string
	// LogFiles counts the log files restored.
	LogFiles int
	// Reapplied are the accounts whose erasure was re-applied, sorted.
	Reapplied []string
}

// Restore restores snapshot id into target and re-applies the erasures
// recorded in ledger through reapply before it reports success:
//
//  1. it checks the target, and the checksums of the files to restore;
//  2. it restores each named database with pg_restore (one transaction per
//     database, without owners and privileges) into its new, empty
//     database, and unpacks the log tree into target.LogsDir;
//  3. it reads from the ledger every account erased at or after the
//     snapshot's creation minus the re-apply margin (clock skew, and
//     erasures during the snapshot), plus every erased account the snapshot
//     holds (erased earlier, but their other purges had not yet run), and
//     calls reapply with them;
//  4. it checks that no restored database (through the tables catalogued
//     for it) and, with target.LogsAccounts, no restored log file still
//     holds any of them.
//
// Only then is the restored data usable. The ledger is read after the data
// is restored, so erasures recorded while Restore runs are included; an
// erasure recorded after Restore returns is not: put the restored data to
// use promptly, or restore again.
//
// Errors: ErrSnapshotNotFound, ErrDamagedManifest, ErrInvalidTarget,
// ErrDamagedSnapshot (checksum mismatch), ErrTargetNotEmpty, and after data
// was restored ErrReapplyFailed (ledger unreadable, reapply failed) or
// ErrReapplyIncomplete (erased accounts still present). In the last two
// cases the restored log files are removed again and the error says that
// the restored databases hold erased accounts and must be dropped.
func (s *Store) Restore(ctx context.Context, id string, target RestoreTarget, ledger SuppressionList, reapply Reapplier) (RestoreResult, error) {
	res := RestoreResult{SnapshotID: id}
	if ledger == nil || reapply == nil {
		return res, fmt.Errorf("%w: a ledger and a reapplier are required", ErrInvalidTarget)
	}
	snap, err := s.Get(ctx, id)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	dumps, err := s.checkTarget(snap, target)
	if err != nil {
		return res, fmt.Errorf("restore snapshot %s: %w", id, err)
	}
	if err := s.verifyFiles(snap, dumps, target.LogsDir != ""); err != nil {
		return res, fmt.Errorf("restore snapshot %s: %w", id, err)
	}
	for _, d := range dumps {
		if err := checkEmpty(ctx, d.Name, target.Databases[d.Name]); err != nil {
			return res, fmt.Errorf("restore snapshot %s: %w", id, err)
		}
	}

	// From here on the targets hold restored data: every failure must say
	// that it is unusable.
	unusable := func(err error) (RestoreResult, error) {
		if target.LogsDir != "" {
			if cerr := emptyDir(target.LogsDir); cerr != nil {
				err = fmt.Errorf("%w; removing the restored log files failed too (%v): delete %s by hand", err, cerr, target.LogsDir)
			} else {
				err = fmt.Errorf("%w (the restored log files were removed)", err)
			}
		}
		if len(res.Databases) == 0 {
			return res, fmt.Errorf("restore snapshot %s: %w", id, err)
		}
		return res, fmt.Errorf("restore snapshot %s: %w; the restored databases (%s) may hold erased accounts and MUST NOT be used: "+
			"drop them, fix the cause, and restore again into new ones", id, err, strings.Join(res.Databases, ", "))
	}
	for _, d := range dumps {
		res.Databases = append(res.Databases, d.Name)
		err := s.pgTool(ctx, "pg_restore", d.Name, target.Databases[d.Name],
			"--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
			filepath.Join(s.dataDir(id), d.Name+dumpSuffix))
		if err != nil {
			return unusable(err)
		}
	}
	if target.LogsDir != "" {
		n, err := extractTar(ctx, filepath.Join(s.dataDir(id), logsFileName), target.LogsDir)
		res.LogFiles = n
		if err != nil {
			return unusable(fmt.Errorf("unpack log tree: %w", err))
		}
	}

	ids, err := ledger.Suppressed(ctx, snap.CreatedAt.Add(-s.margin), snap.Accounts)
	if err != nil {
		return unusable(fmt.Errorf("%w: %w", ErrReapplyFailed, err))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return res, nil
	}
	if err := reapply.Reapply(ctx, ids); err != nil {
		return unusable(fmt.Errorf("%w: %d accounts: %w", ErrReapplyFailed, len(ids), err))
	}
	for _, d := range dumps {
		if err := checkErased(ctx, d, target.Databases[d.Name], ids); err != nil {
			return unusable(err)
		}
	}
	if target.LogsDir != "" && target.LogsAccounts != nil {
		left, err := target.LogsAccounts(ctx, target.LogsDir)
		if err != nil {
			return unusable(fmt.Errorf("%w: list accounts of the restored log tree: %w", ErrReapplyFailed, err))
		}
		if still := intersect(ids, left); len(still) > 0 {
			return unusable(fmt.Errorf("%w: the restored log tree still holds %d of them (%s)", ErrReapplyIncomplete, len(still), sample(still)))
		}
	}
	res.Reapplied = ids
	return res, nil
}

// checkTarget returns the dumps to restore, sorted by name.
func (s *Store) checkTarget(snap Snapshot, target RestoreTarget) ([]DatabaseDump, error) {
	if len(target.Databases) == 0 && target.LogsDir == "" {
		return nil, fmt.Errorf("%w: neither databases nor a log directory", ErrInvalidTarget)
	}
	byName := map[string]DatabaseDump{}
	for _, d := range snap.Databases {
		byName[d.Name] = d
	}
	var dumps []DatabaseDump
	for _, name := range slices.Sorted(maps.Keys(target.Databases)) {
		d, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%w: the snapshot has no database %q (it has %s)", ErrInvalidTarget, name, databaseNames(snap))
		}
		if target.Databases[name] == "" {
			return nil, fmt.Errorf("%w: empty DSN for database %s", ErrInvalidTarget, name)
		}
		dumps = append(dumps, d)
	}
	if target.LogsDir != "" {
		if snap.Logs == nil {
			return nil, fmt.Errorf("%w: the snapshot has no log tree", ErrInvalidTarget)
		}
		entries, err := os.ReadDir(target.LogsDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("%w: log directory: %w", ErrInvalidTarget, err)
		case len(entries) > 0:
			return nil, fmt.Errorf("%w: log directory %s is not empty (restore into a new directory)", ErrInvalidTarget, target.LogsDir)
		}
	}
	return dumps, nil
}

func databaseNames(snap Snapshot) string {
	if len(snap.Databases) == 0 {
		return "none"
	}
	names := make([]string, len(snap.Databases))
	for i, d := range snap.Databases {
		names[i] = d.Name
	}
	return strings.Join(names, ", ")
}

// verifyFiles compares the files to restore with their catalogued size and
// checksum.
func (s *Store) verifyFiles(snap Snapshot, dumps []DatabaseDump, logs bool) error {
	check := func(what, file string, size int64, sum string) error {
		n, got, err := hashFile(filepath.Join(s.dataDir(snap.ID), file))
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrDamagedSnapshot, what, err)
		}
		if n != size || got != sum {
			return fmt.Errorf("%w: %s does not match its catalogued checksum", ErrDamagedSnapshot, what)
		}
		return nil
	}
	for _, d := range dumps {
		if err := check("dump of database "+d.Name, d.Name+dumpSuffix, d.Size, d.SHA256); err != nil {
			return err
		}
	}
	if logs {
		return check("log tree", logsFileName, snap.Logs.Size, snap.Logs.SHA256)
	}
	return nil
}

const userRelationsSQL = `
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'`

// checkEmpty makes sure the target database has no tables, views or
// sequences of its own.
func checkEmpty(ctx context.Context, name, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to target database %s: %w", name, err)
	}
	defer closeConn(ctx, conn)
	var n int64
	if err := conn.QueryRow(ctx, userRelationsSQL).Scan(&n); err != nil {
		return fmt.Errorf("inspect target database %s: %w", name, err)
	}
	if n > 0 {
		return fmt.Errorf("%w: database %s has %d relations (create a new database: CREATE DATABASE ...)", ErrTargetNotEmpty, name, n)
	}
	return nil
}

// checkErased makes sure that the restored database holds none of ids in
// the tables catalogued for it.
func checkErased(ctx context.Context, d DatabaseDump, dsn string, ids []string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("%w: connect to restored database %s to check it: %w", ErrReapplyFailed, d.Name, err)
	}
	defer closeConn(ctx, conn)
	// The conditions come from the catalog: evaluate them read-only.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("%w: check restored database %s: %w", ErrReapplyFailed, d.Name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, accountsSQL(d.Tables, true), ids)
	if err != nil {
		return fmt.Errorf("%w: check restored database %s: %w", ErrReapplyFailed, d.Name, err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("%w: check restored database %s: %w", ErrReapplyFailed, d.Name, err)
	}
	if len(left) > 0 {
		slices.Sort(left)
		return fmt.Errorf("%w: database %s still holds %d of them (%s)", ErrReapplyIncomplete, d.Name, len(left), sample(left))
	}
	return nil
}

func closeConn(ctx context.Context, conn *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = conn.Close(cctx)
}

// intersect returns the elements of sorted that are also in other.
func intersect(sorted, other []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, id := range other {
		if _, ok := slices.BinarySearch(sorted, id); ok && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// sample names at most five account ids (internal ids, not personal data).
func sample(ids []string) string {
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + ", …"
	}
	return strings.Join(ids, ", ")
}

// extractTar unpacks a log tree written by writeTar into dir, creating it.
// The archive is checked against its checksum before, but is still read as
// outside input: only relative paths inside dir, only files and
// directories. Files are fsynced.
func extractTar(ctx context.Context, src, dir string) (int, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	tr := tar.NewReader(f)
	files := 0
	for {
		if err := ctx.Err(); err != nil {
			return files, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, fmt.Errorf("%w: log archive: %w", ErrDamagedSnapshot, err)
		}
		name := path.Clean(strings.TrimSuffix(hdr.Name, "/"))
		local := filepath.FromSlash(name)
		if !filepath.IsLocal(local) {
			return files, fmt.Errorf("%w: log archive: entry %d leaves the directory", ErrDamagedSnapshot, files)
		}
		dst := filepath.Join(dir, local)
		mode := fs.FileMode(hdr.Mode).Perm() | 0o600
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, mode|0o700); err != nil {
				return files, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return files, err
			}
			if err := writeRestoredFile(dst, mode, tr, hdr.Size); err != nil {
				return files, err
			}
			_ = os.Chtimes(dst, hdr.ModTime, hdr.ModTime)
			files++
		default:
			return files, fmt.Errorf("%w: log archive: entry of type %q is neither file nor directory", ErrDamagedSnapshot, hdr.Typeflag)
		}
	}
	return files, syncDir(dir)
}

func writeRestoredFile(dst string, mode fs.FileMode, r io.Reader, size int64) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(out, r, size); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// emptyDir removes everything inside dir (which Restore found empty or
// missing), leaving dir itself.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
