package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lethe-privacy/lethe/services/backups/backupstore"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

var backupsSpec = commandSpec{
	name:    "backups",
	summary: "take, list, rotate and restore backup snapshots of the local stores",
	usage: "backups take | list | rotate | restore SNAPSHOT_ID (--target-suffix NAME | " +
		"[--contacts-target-dsn DSN] [--billing-target-dsn DSN] [--logs-target-dir DIR])",
	description: `
Works on the backup root (LETHE_BACKUP_ROOT) directly, as the backups worker
does; the worker keeps the restore ledger in the backups database
(LETHE_BACKUPS_DSN).

  take     snapshots the contacts and billing databases (pg_dump) and the
           event-log tree (LETHE_LOGS_ROOT) into the backup root, and
           catalogues the accounts it holds personal data of (billing
           tombstones and pseudonymised invoices are not counted: they hold
           none). Needs pg_dump of the servers' major version or newer.
  list     the snapshots: id, creation, expiry, accounts, size and state (ok;
           expired: the next rotate deletes it; incomplete: being taken, or
           abandoned by a crash; damaged: its catalog entry is unreadable).
  rotate   deletes the snapshots older than the retention (--retention,
           LETHE_BACKUP_RETENTION) and the files of abandoned ones.
  restore  restores a snapshot into new, empty targets, re-applies every
           erasure of the restore ledger that can concern it with the real
           purges of the contacts, logs and billing stores run against the
           restored copies, checks that no erased account is left, and only
           then reports success. Billing is re-applied without the payment
           provider (the live billing worker deletes the customer there): a
           re-applied account's tombstone keeps its provider customer id,
           which the footprint counts as provider_customer.
           Targets: --target-suffix NAME creates the databases
           <database>_restore_NAME on the servers of the live ones (needs
           CREATEDB) and the directory <logs root>_restore_NAME; or name new,
           empty targets with --contacts-target-dsn, --billing-target-dsn and
           --logs-target-dir, and only those parts are restored.

When re-applying the erasures fails, restore exits 8 with the reason: the
restored data holds erased accounts and MUST NOT be used. Targets that
restore created are dropped again; targets you named are yours to drop.
Progress goes to stderr; with -o json every action prints one JSON document.`,
	examples: `  erasectl backups take
  erasectl backups list -o json
  erasectl backups rotate --retention 35d
  erasectl backups restore 20260615T101500Z-3f9a0c2e --target-suffix check1
  erasectl backups restore 20260615T101500Z-3f9a0c2e --logs-target-dir /srv/restore/logs \
      --contacts-target-dsn postgres://lethe@db:5432/contacts_restored`,
	globals: flagContactsDSN | flagBillingDSN | flagLogsRoot | flagBackupRoot | flagBackupsDSN | flagBackupRetention,
	new:     func() command { return &backupsCmd{} },
}

// The names of the stores' databases inside a snapshot, and of the log
// tree in restore's output.
const (
	backupContacts = "contacts"
	backupBilling  = "billing"
	backupLogs     = "logs"
)

// contactsBackupTables are where the contacts database keeps account data.
func contactsBackupTables() []backupstore.AccountTable {
	return backupstore.Tables("contact_lists", "contacts", "contact_list_members", "contact_properties")
}

// billingBackupTables are where the billing database keeps personal data.
// An erasure keeps the customer row as a tombstone (erased_at set, personal
// columns cleared by a check constraint) and the invoices pseudonymised
// (pseudonymised_at set, printed personal columns cleared): those rows hold
// no personal data, so a snapshot holding only them does not hold the
// account. The tombstone's provider_customer_id is left out on purpose:
// the billing worker clears it once the provider deleted the customer,
// and a restored copy re-applied without the provider keeps it (see
// billingstore.WithoutProvider); counting it would fail every restore
// taken before that.
func billingBackupTables() []backupstore.AccountTable {
	return []backupstore.AccountTable{
		{Name: "customers", Where: "erased_at IS NULL"},
		{Name: "invoices", Where: "pseudonymised_at IS NULL"},
	}
}

// suffixPattern is what --target-suffix may be: it becomes part of
// database and directory names.
var suffixPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,23}$`)

type backupsCmd struct {
	action     string
	snapshotID string

	contactsTarget string
	billingTarget  string
	logsTarget     string
	suffix         string
}

func (c *backupsCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.suffix, "target-suffix", "", "restore: create new targets named <database>_restore_`NAME` and <logs root>_restore_NAME")
	fs.StringVar(&c.contactsTarget, "contacts-target-dsn", "", "restore: new, empty database `DSN` to restore the contacts database into")
	fs.StringVar(&c.billingTarget, "billing-target-dsn", "", "restore: new, empty database `DSN` to restore the billing database into")
	fs.StringVar(&c.logsTarget, "logs-target-dir", "", "restore: new or empty `DIR` to restore the event-log tree into")
}

func (c *backupsCmd) args(pos []string) error {
	if len(pos) == 0 {
		return errors.New("want an action: take, list, rotate or restore")
	}
	c.action = pos[0]
	explicit := c.contactsTarget != "" || c.billingTarget != "" || c.logsTarget != ""
	switch c.action {
	case "take", "list", "rotate":
		if len(pos) != 1 {
			return fmt.Errorf("%s takes no arguments", c.action)
		}
		if explicit || c.suffix != "" {
			return fmt.Errorf("the target flags belong to restore, not %s", c.action)
		}
	case "restore":
		if len(pos) != 2 {
			return errors.New("restore wants one SNAPSHOT_ID ('erasectl backups list' shows them)")
		}
		c.snapshotID = pos[1]
		if !backupstore.ValidSnapshotID(c.snapshotID) {
			return fmt.Errorf("%q is not a snapshot id (like 20260615T101500Z-3f9a0c2e)", c.snapshotID)
		}
		switch {
		case c.suffix != "" && explicit:
			return errors.New("give either --target-suffix or target DSNs and directory, not both")
		case c.suffix == "" && !explicit:
			return errors.New("restore wants targets: --target-suffix NAME, or --contacts-target-dsn, --billing-target-dsn and --logs-target-dir")
		case c.suffix != "" && !suffixPattern.MatchString(c.suffix):
			return errors.New("--target-suffix must be lower-case letters, digits and '_' (at most 24), starting with a letter or digit")
		}
	default:
		return fmt.Errorf("unknown action %q: want take, list, rotate or restore", c.action)
	}
	return nil
}

func (c *backupsCmd) run(ctx context.Context, p *program) error {
	retention, err := backupstore.ParseRetention(p.cfg.backupRetention)
	if err != nil {
		return usageErrorf("--retention / %s: %v", EnvBackupRetention, err)
	}
	store, err := backupstore.New(p.cfg.backupRoot, backupstore.WithRetention(retention))
	if err != nil {
		return fmt.Errorf("%w; point %s (or --backup-root) at the backup root", err, EnvBackupRoot)
	}
	switch c.action {
	case "take":
		return c.take(ctx, p, store)
	case "list":
		return c.list(ctx, p, store)
	case "rotate":
		return c.rotate(ctx, p, store)
	default:
		return c.restore(ctx, p, store)
	}
}

// take snapshots the three stores.
func (c *backupsCmd) take(ctx context.Context, p *program, store *backupstore.Store) error {
	if err := checkDir(p.cfg.logsRoot); err != nil {
		return fmt.Errorf("event-log root: %w; point %s (or --logs-root) at the segments", err, EnvLogsRoot)
	}
	logs, err := logstore.Open(ctx, p.cfg.logsRoot)
	if err != nil {
		return err
	}
	defer logs.Close()
	src := backupstore.Source{
		Databases: []backupstore.Database{
			{Name: backupContacts, DSN: p.cfg.contactsDSN, Tables: contactsBackupTables()},
			{Name: backupBilling, DSN: p.cfg.billingDSN, Tables: billingBackupTables()},
		},
		Logs: &backupstore.LogsSource{Dir: logs.Root(), Accounts: logs.Accounts},
	}
	fmt.Fprintf(p.stderr, "taking a snapshot of the contacts and billing databases and the event logs in %s into %s\n", logs.Root(), store.Root())
	start := time.Now()
	stop := tick(p.stderr, 5*time.Second, func(d time.Duration) string {
		return fmt.Sprintf("still taking the snapshot (%s)", d.Round(time.Second))
	})
	snap, err := store.TakeSnapshot(ctx, src)
	stop()
	if err != nil {
		return backupError(err, "start PostgreSQL with scripts/demo, or point "+EnvContactsDSN+" and "+EnvBillingDSN+" (or the matching flags) at it")
	}
	fmt.Fprintf(p.stderr, "snapshot %s taken in %s\n", snap.ID, time.Since(start).Round(time.Millisecond))
	out := newSnapshotJSON(store, snap, time.Now())
	if p.cfg.json() {
		return writeJSON(p.stdout, out)
	}
	dbs := make([]string, len(snap.Databases))
	for i, d := range snap.Databases {
		dbs[i] = d.Name + " " + formatBytes(d.Size)
	}
	fields := [][2]string{
		{"snapshot", snap.ID},
		{"created", formatTime(snap.CreatedAt)},
		{"completed", formatTime(snap.CompletedAt)},
		{"expires", formatTime(out.ExpiresAt)},
		{"databases", strings.Join(dbs, ", ")},
	}
	if snap.Logs != nil {
		fields = append(fields, [2]string{"logs", fmt.Sprintf("%d files, %s", snap.Logs.Files, formatBytes(snap.Logs.Size))})
	}
	fields = append(fields,
		[2]string{"size", formatBytes(out.SizeBytes)},
		[2]string{"accounts", strconv.Itoa(len(snap.Accounts))})
	return writeFields(p.stdout, fields)
}

// snapshotJSON is a snapshot in erasectl's output.
type snapshotJSON struct {
	ID          string        `json:"id"`
	State       string        `json:"state"`
	CreatedAt   time.Time     `json:"created_at"`
	CompletedAt *time.Time    `json:"completed_at,omitempty"`
	ExpiresAt   time.Time     `json:"expires_at"`
	Databases   []dumpJSON    `json:"databases,omitempty"`
	Logs        *logsDumpJSON `json:"logs,omitempty"`
	SizeBytes   int64         `json:"size_bytes"`
	Accounts    *int          `json:"accounts,omitempty"`
	Problem     string        `json:"error,omitempty"`
}

type dumpJSON struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

type logsDumpJSON struct {
	Files     int    `json:"files"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// Snapshot states in list.
const (
	stateOK         = "ok"
	stateExpired    = "expired"
	stateIncomplete = "incomplete"
	stateDamaged    = "damaged"
)

func newSnapshotJSON(store *backupstore.Store, snap backupstore.Snapshot, now time.Time) snapshotJSON {
	completed := snap.CompletedAt
	n := len(snap.Accounts)
	out := snapshotJSON{
		ID:          snap.ID,
		State:       stateOK,
		CreatedAt:   snap.CreatedAt,
		CompletedAt: &completed,
		ExpiresAt:   store.ExpiresAt(snap.CreatedAt),
		Accounts:    &n,
	}
	if !out.ExpiresAt.After(now) {
		out.State = stateExpired
	}
	for _, d := range snap.Databases {
		out.Databases = append(out.Databases, dumpJSON{Name: d.Name, SizeBytes: d.Size, SHA256: d.SHA256})
		out.SizeBytes += d.Size
	}
	if l := snap.Logs; l != nil {
		out.Logs = &logsDumpJSON{Files: l.Files, SizeBytes: l.Size, SHA256: l.SHA256}
		out.SizeBytes += l.Size
	}
	return out
}

// idTime is the creation time a snapshot id starts with.
func idTime(id string) time.Time {
	t, _ := time.Parse("20060102T150405Z", strings.SplitN(id, "-", 2)[0])
	return t
}

// list prints the inventory of the backup root.
func (c *backupsCmd) list(ctx context.Context, p *program, store *backupstore.Store) error {
	inv, err := store.Inventory(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	var rows []snapshotJSON
	for _, s := range inv.Snapshots {
		rows = append(rows, newSnapshotJSON(store, s, now))
	}
	for _, id := range inv.Incomplete {
		rows = append(rows, snapshotJSON{ID: id, State: stateIncomplete, CreatedAt: idTime(id), ExpiresAt: store.ExpiresAt(idTime(id))})
	}
	for _, id := range inv.Damaged {
		rows = append(rows, snapshotJSON{ID: id, State: stateDamaged, CreatedAt: idTime(id), ExpiresAt: store.ExpiresAt(idTime(id)),
			Problem: "catalog entry unreadable"})
	}
	// Ids start with the creation time.
	slices.SortFunc(rows, func(a, b snapshotJSON) int { return strings.Compare(a.ID, b.ID) })
	if len(inv.Damaged) > 0 {
		fmt.Fprintf(p.stderr, "%d damaged catalog entries: repair them from a copy, or delete the snapshot's catalog entry and directory; rotate deletes them once expired\n", len(inv.Damaged))
	}
	if p.cfg.json() {
		if rows == nil {
			rows = []snapshotJSON{}
		}
		return writeJSON(p.stdout, struct {
			Root      string         `json:"backup_root"`
			Retention string         `json:"retention"`
			Snapshots []snapshotJSON `json:"snapshots"`
		}{store.Root(), p.cfg.backupRetention, rows})
	}
	if len(rows) == 0 {
		fmt.Fprintf(p.stderr, "no snapshots in %s\n", store.Root())
	}
	t := newTable("ID", "CREATED", "EXPIRES", "ACCOUNTS", "SIZE", "STATE")
	for _, r := range rows {
		accounts, size := "-", "-"
		if r.Accounts != nil {
			accounts, size = strconv.Itoa(*r.Accounts), formatBytes(r.SizeBytes)
		}
		t.add(r.ID, formatTime(r.CreatedAt), formatTime(r.ExpiresAt), accounts, size, r.State)
	}
	return t.write(p.stdout)
}

// rotate deletes what the retention lets go and prints what it did.
func (c *backupsCmd) rotate(ctx context.Context, p *program, store *backupstore.Store) error {
	res, err := store.Rotate(ctx)
	if err != nil {
		return err
	}
	inv, err := store.Inventory(ctx)
	if err != nil {
		return err
	}
	kept := make([]string, 0, len(inv.Snapshots))
	for _, s := range inv.Snapshots {
		kept = append(kept, s.ID)
	}
	if res.Busy > 0 {
		fmt.Fprintf(p.stderr, "%d incomplete snapshots left alone: a snapshot is being taken; a later rotate removes them if they are abandoned\n", res.Busy)
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, struct {
			Retention string   `json:"retention"`
			Deleted   []string `json:"deleted"`
			Abandoned []string `json:"abandoned"`
			Kept      []string `json:"kept"`
			Damaged   []string `json:"damaged"`
			Busy      int      `json:"busy"`
		}{p.cfg.backupRetention, nonNil(res.Deleted), nonNil(res.Abandoned), kept, nonNil(res.Damaged), res.Busy})
	}
	t := newTable("SNAPSHOT", "CREATED", "ACTION")
	for _, id := range res.Deleted {
		t.add(id, formatTime(idTime(id)), "deleted: expired "+formatTime(store.ExpiresAt(idTime(id))))
	}
	for _, id := range res.Abandoned {
		t.add(id, formatTime(idTime(id)), "removed: incomplete, abandoned")
	}
	for _, s := range inv.Snapshots {
		t.add(s.ID, formatTime(s.CreatedAt), "kept until "+formatTime(store.ExpiresAt(s.CreatedAt)))
	}
	for _, id := range res.Damaged {
		t.add(id, formatTime(idTime(id)), "kept: damaged catalog entry, not expired")
	}
	if err := t.write(p.stdout); err != nil {
		return err
	}
	_, err = fmt.Fprintf(p.stdout, "deleted %d, removed %d abandoned, kept %d (retention %s)\n",
		len(res.Deleted), len(res.Abandoned), len(kept)+len(res.Damaged), p.cfg.backupRetention)
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// backupError gives an error of the backup store its exit code: 5, with
// advice, when a database cannot be reached.
func backupError(err error, advice string) error {
	var (
		ce *pgconn.ConnectError
		ne net.Error
	)
	if errors.As(err, &ce) || errors.As(err, &ne) {
		return withCode(ExitUnavailable, fmt.Errorf("%w; %s", err, advice))
	}
	return err
}

// checkDir reports whether dir exists and is a directory.
func checkDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// tick calls line every interval and writes what it returns, until the
// returned stop is called.
func tick(w io.Writer, interval time.Duration, line func(elapsed time.Duration) string) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(w, line(time.Since(start)))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// formatBytes prints a size in bytes, kB, MB or GB (powers of 1000).
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 2; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %s", float64(n)/float64(div), []string{"kB", "MB", "GB"}[exp])
}
