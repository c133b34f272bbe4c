package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/backups/backupstore"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// restoreStage is the stage of the tasks a restore's re-application runs;
// their job id is "restore-<snapshot id>".
const restoreStage = "restore"

// restore restores the snapshot into new targets and re-applies the
// ledger's erasures to them before it reports success.
func (c *backupsCmd) restore(ctx context.Context, p *program, store *backupstore.Store) error {
	snap, err := store.Get(ctx, c.snapshotID)
	switch {
	case errors.Is(err, backupstore.ErrSnapshotNotFound):
		return withCode(ExitNotFound, fmt.Errorf("%w; 'erasectl backups list' shows the snapshots in %s", err, store.Root()))
	case err != nil:
		return err
	}
	// The ledger first: without it nothing may be restored. It is not
	// migrated here: a wrong DSN must fail, not yield an empty ledger
	// that re-applies nothing.
	ledger, err := backupstore.OpenLedger(ctx, p.cfg.backupsDSN)
	if err != nil {
		return backupError(err, "start PostgreSQL with scripts/demo, or point "+EnvBackupsDSN+" (or --backups-dsn) at the backups database")
	}
	defer ledger.Close()

	tg, err := c.targets(ctx, p, snap)
	if err != nil {
		return restoreError(ctx, err)
	}
	// The ticker and the re-application both write progress.
	progress := &lockedWriter{w: p.stderr}
	re := &storeReapplier{
		jobID:       "restore-" + snap.ID,
		contactsDSN: tg.databases[backupContacts],
		billingDSN:  tg.databases[backupBilling],
		logsDir:     tg.logsDir,
		progress:    progress,
	}
	target := backupstore.RestoreTarget{Databases: tg.databases, LogsDir: tg.logsDir}
	if tg.logsDir != "" {
		target.LogsAccounts = restoredLogAccounts
	}
	fmt.Fprintf(p.stderr, "restoring snapshot %s (created %s, %s) into %s\n",
		snap.ID, formatTime(snap.CreatedAt), accounts(len(snap.Accounts)), tg.describe())
	stop := tick(progress, 5*time.Second, func(d time.Duration) string {
		return fmt.Sprintf("still restoring (%s)", d.Round(time.Second))
	})
	res, err := store.Restore(ctx, snap.ID, target, ledger, re)
	stop()
	if err != nil {
		return restoreError(ctx, tg.discard(ctx, err))
	}
	return writeRestore(p, snap, tg, res, re)
}

// restoreError gives a failed restore its exit code.
func restoreError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, backupstore.ErrReapplyFailed), errors.Is(err, backupstore.ErrReapplyIncomplete):
		return withCode(ExitRestoreUnusable, err)
	case ctx.Err() != nil:
		// Not just "interrupted": the message says what to do with the
		// targets.
		return withCode(ExitInterrupted, fmt.Errorf("interrupted: %w", err))
	case errors.Is(err, backupstore.ErrInvalidTarget), errors.Is(err, backupstore.ErrTargetNotEmpty):
		return withCode(ExitUsage, err)
	}
	return backupError(err, "check that PostgreSQL is running and that the target DSNs are right")
}

// restoreTargets are where a restore goes, and what erasectl created for it.
type restoreTargets struct {
	// databases maps a database of the snapshot to its target DSN.
	databases map[string]string
	logsDir   string
	// created are the databases and the directory this run created, to be
	// removed again when the restore fails.
	created    []createdDatabase
	createdDir string
}

type createdDatabase struct {
	// adminDSN is the live database on the same server, through which the
	// target was created.
	adminDSN, name string
}

// targets are the flags' targets, or new ones named with --target-suffix.
func (c *backupsCmd) targets(ctx context.Context, p *program, snap backupstore.Snapshot) (*restoreTargets, error) {
	tg := &restoreTargets{databases: map[string]string{}}
	if c.suffix == "" {
		if c.contactsTarget != "" {
			tg.databases[backupContacts] = c.contactsTarget
		}
		if c.billingTarget != "" {
			tg.databases[backupBilling] = c.billingTarget
		}
		tg.logsDir = c.logsTarget
		return tg, nil
	}

	// Everything is checked before anything is created.
	type plan struct{ name, sourceDSN, targetDSN, database string }
	var plans []plan
	for _, d := range snap.Databases {
		var source string
		switch d.Name {
		case backupContacts:
			source = p.cfg.contactsDSN
		case backupBilling:
			source = p.cfg.billingDSN
		default:
			fmt.Fprintf(p.stderr, "not restoring database %s of the snapshot: erasectl cannot re-apply erasures to it\n", d.Name)
			continue
		}
		dsn, db, err := suffixDSN(source, c.suffix)
		if err != nil {
			return nil, usageErrorf("--target-suffix: %s database: %v", d.Name, err)
		}
		plans = append(plans, plan{d.Name, source, dsn, db})
	}
	if snap.Logs != nil {
		tg.logsDir = filepath.Clean(p.cfg.logsRoot) + "_restore_" + c.suffix
		if _, err := os.Lstat(tg.logsDir); err == nil {
			return nil, usageErrorf("--target-suffix: %s exists already: choose another suffix, or remove it", tg.logsDir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, pl := range plans {
		if err := createDatabase(ctx, pl.sourceDSN, pl.database); err != nil {
			return nil, tg.discard(ctx, fmt.Errorf("create target database %s: %w", pl.database, err))
		}
		tg.created = append(tg.created, createdDatabase{adminDSN: pl.sourceDSN, name: pl.database})
		tg.databases[pl.name] = pl.targetDSN
	}
	if tg.logsDir != "" {
		if err := os.Mkdir(tg.logsDir, 0o700); err != nil {
			return nil, tg.discard(ctx, fmt.Errorf("create target log directory: %w", err))
		}
		tg.createdDir = tg.logsDir
	}
	var made []string
	for _, d := range tg.created {
		made = append(made, "database "+d.name)
	}
	if tg.createdDir != "" {
		made = append(made, "directory "+tg.createdDir)
	}
	fmt.Fprintf(p.stderr, "created %s\n", strings.Join(made, ", "))
	return tg, nil
}

// describe names the targets for progress lines, without passwords.
func (t *restoreTargets) describe() string {
	var parts []string
	for _, name := range []string{backupContacts, backupBilling} {
		if dsn, ok := t.databases[name]; ok {
			parts = append(parts, name+" → "+redactDSN(dsn))
		}
	}
	if t.logsDir != "" {
		parts = append(parts, "logs → "+t.logsDir)
	}
	return strings.Join(parts, ", ")
}

// discard removes what this run created for a restore that failed, and
// says so in the returned error, which wraps err.
func (t *restoreTargets) discard(ctx context.Context, err error) error {
	if len(t.created) == 0 && t.createdDir == "" {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var removed, failed []string
	for _, d := range t.created {
		if derr := dropDatabase(cctx, d.adminDSN, d.name); derr != nil {
			failed = append(failed, fmt.Sprintf("database %s (%v)", d.name, derr))
		} else {
			removed = append(removed, "database "+d.name)
		}
	}
	if t.createdDir != "" {
		if rerr := os.RemoveAll(t.createdDir); rerr != nil {
			failed = append(failed, fmt.Sprintf("directory %s (%v)", t.createdDir, rerr))
		} else {
			removed = append(removed, "directory "+t.createdDir)
		}
	}
	t.created, t.createdDir = nil, ""
	if len(removed) > 0 {
		err = fmt.Errorf("%w; erasectl created %s for this restore and removed them again", err, strings.Join(removed, ", "))
	}
	if len(failed) > 0 {
		err = fmt.Errorf("%w; removing what erasectl created failed for %s: drop or delete it by hand", err, strings.Join(failed, ", "))
	}
	return err
}

// suffixDSN is dsn with its database name replaced by
// "<name>_restore_<suffix>", and that name.
func suffixDSN(dsn, suffix string) (target, database string, err error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", "", err
	}
	if cfg.Database == "" {
		return "", "", errors.New("the DSN names no database")
	}
	database = cfg.Database + "_restore_" + suffix
	if len(database) > 63 {
		return "", "", fmt.Errorf("%s is longer than PostgreSQL's 63 bytes: use a shorter suffix", database)
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", "", errors.New("the DSN does not parse as a URL")
		}
		u.Path, u.RawPath = "/"+database, ""
		return u.String(), database, nil
	}
	// key=value: a later dbname wins, in libpq as in pgx.
	quoted := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(database)
	return dsn + " dbname='" + quoted + "'", database, nil
}

// createDatabase creates the database name on the server of adminDSN.
func createDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42P04": // duplicate_database
			return withCode(ExitUsage, fmt.Errorf("%w: choose another --target-suffix, or drop it", err))
		case "42501": // insufficient_privilege
			return fmt.Errorf("%w: the user needs CREATEDB; or create new, empty databases and name them with "+
				"--contacts-target-dsn and --billing-target-dsn", err)
		}
	}
	return err
}

// dropDatabase drops the database name on the server of adminDSN, closing
// any connection still open to it.
func dropDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func closeConn(ctx context.Context, conn *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = conn.Close(cctx)
}

// keywordPassword finds the password of a key=value DSN.
var keywordPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// redactDSN hides the password of a DSN for messages.
func redactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return redactURL(dsn)
	}
	return keywordPassword.ReplaceAllString(dsn, "password=xxxxx")
}

// restoredLogAccounts lists the accounts of a restored log tree, for
// Restore's check after the re-application.
func restoredLogAccounts(ctx context.Context, dir string) ([]string, error) {
	st, err := logstore.Open(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Accounts(ctx)
}

// storeReapplier re-applies erasures to restored copies with the stores'
// own purges: contacts deleted, billing pseudonymised without the payment
// provider, event-log records removed. A store whose target is empty was
// not restored and is left out.
type storeReapplier struct {
	jobID                            string
	contactsDSN, billingDSN, logsDir string
	progress                         io.Writer

	// What Reapply did: items purged per account and store, and how many
	// restored billing tombstones keep their provider customer id.
	mu           sync.Mutex
	items        map[string]map[string]int64
	providerRefs int64
}

var _ backupstore.Reapplier = (*storeReapplier)(nil)

func (r *storeReapplier) Reapply(ctx context.Context, accountIDs []string) error {
	fmt.Fprintf(r.progress, "re-applying the erasures of %s to the restored data\n", accounts(len(accountIDs)))
	r.items = make(map[string]map[string]int64, len(accountIDs))
	for _, id := range accountIDs {
		r.items[id] = map[string]int64{}
	}
	if r.contactsDSN != "" {
		if err := r.contacts(ctx, accountIDs); err != nil {
			return fmt.Errorf("restored contacts database: %w", err)
		}
	}
	if r.billingDSN != "" {
		if err := r.billing(ctx, accountIDs); err != nil {
			return fmt.Errorf("restored billing database: %w", err)
		}
	}
	if r.logsDir != "" {
		if err := r.logs(ctx, accountIDs); err != nil {
			return fmt.Errorf("restored event logs: %w", err)
		}
	}
	return nil
}

func (r *storeReapplier) task(category, action, accountID string) worker.Task {
	return worker.Task{JobID: r.jobID, AccountID: accountID, Category: category, Stage: restoreStage, Action: action, Generation: 1, Attempt: 1}
}

func (r *storeReapplier) record(accountID, store string, n int64) {
	r.mu.Lock()
	r.items[accountID][store] += n
	r.mu.Unlock()
}

func (r *storeReapplier) contacts(ctx context.Context, ids []string) error {
	st, err := contactstore.Open(ctx, r.contactsDSN)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, id := range ids {
		res, err := st.Purge(ctx, r.task(erasurev1.CategoryContacts, contactstore.ActionDelete, id))
		r.record(id, backupContacts, res.ItemsPurged)
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *storeReapplier) billing(ctx context.Context, ids []string) error {
	// The live billing worker deletes the customer at the provider; this
	// copy is erased locally only (see billingstore.WithoutProvider).
	st, err := billingstore.Open(ctx, r.billingDSN, billingstore.WithoutProvider())
	if err != nil {
		return err
	}
	defer st.Close()
	for _, id := range ids {
		res, err := st.Purge(ctx, r.task(erasurev1.CategoryBilling, billingstore.ActionPseudonymise, id))
		r.record(id, backupBilling, res.ItemsPurged)
		if err != nil {
			return err
		}
	}
	fps, err := st.Footprint(ctx, ids)
	if err != nil {
		return err
	}
	for _, fp := range fps {
		r.providerRefs += fp.Detail[billingstore.KindProviderCustomer]
	}
	return nil
}

// logs purges all accounts at once, so that the store erases them in one
// pass over the segments.
func (r *storeReapplier) logs(ctx context.Context, ids []string) error {
	st, err := logstore.Open(ctx, r.logsDir)
	if err != nil {
		return err
	}
	defer st.Close()
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res, err := st.Purge(ctx, r.task(erasurev1.CategoryLogs, logstore.ActionDelete, id))
			r.record(id, backupLogs, res.ItemsPurged)
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// restoreJSON is a restore's result in erasectl's output.
type restoreJSON struct {
	SnapshotID        string            `json:"snapshot_id"`
	SnapshotCreatedAt time.Time         `json:"snapshot_created_at"`
	Targets           map[string]string `json:"targets"`
	CreatedTargets    bool              `json:"created_targets"`
	Databases         []string          `json:"databases"`
	LogFiles          int               `json:"log_files"`
	Reapplied         []reappliedJSON   `json:"reapplied"`
	// ProviderReferencesKept counts re-applied accounts whose restored
	// billing tombstone keeps the payment provider's customer id.
	ProviderReferencesKept int64 `json:"provider_references_kept"`
}

type reappliedJSON struct {
	AccountID string           `json:"account_id"`
	Items     map[string]int64 `json:"items"`
}

func writeRestore(p *program, snap backupstore.Snapshot, tg *restoreTargets, res backupstore.RestoreResult, re *storeReapplier) error {
	out := restoreJSON{
		SnapshotID:             snap.ID,
		SnapshotCreatedAt:      snap.CreatedAt,
		Targets:                map[string]string{},
		CreatedTargets:         len(tg.created) > 0 || tg.createdDir != "",
		Databases:              nonNil(res.Databases),
		LogFiles:               res.LogFiles,
		Reapplied:              []reappliedJSON{},
		ProviderReferencesKept: re.providerRefs,
	}
	for name, dsn := range tg.databases {
		out.Targets[name] = redactDSN(dsn)
	}
	if tg.logsDir != "" {
		out.Targets[backupLogs] = tg.logsDir
	}
	for _, id := range res.Reapplied {
		out.Reapplied = append(out.Reapplied, reappliedJSON{AccountID: id, Items: re.items[id]})
	}
	fmt.Fprintf(p.stderr, "restored snapshot %s; the erasures of %s were re-applied and checked\n", snap.ID, accounts(len(res.Reapplied)))
	if p.cfg.json() {
		return writeJSON(p.stdout, out)
	}
	fields := [][2]string{{"snapshot", snap.ID + " (created " + formatTime(snap.CreatedAt) + ")"}}
	for _, name := range []string{backupContacts, backupBilling} {
		if dsn, ok := out.Targets[name]; ok {
			fields = append(fields, [2]string{name, "restored into " + dsn})
		}
	}
	if tg.logsDir != "" {
		fields = append(fields, [2]string{"logs", fmt.Sprintf("%d files restored into %s", res.LogFiles, tg.logsDir)})
	}
	reapplied := "none: the ledger holds no erasure that concerns this snapshot"
	if n := len(res.Reapplied); n > 0 {
		reapplied = accounts(n) + ": " + strings.Join(res.Reapplied, ", ")
	}
	fields = append(fields, [2]string{"re-applied", reapplied})
	if err := writeFields(p.stdout, fields); err != nil {
		return err
	}
	if len(res.Reapplied) > 0 {
		io.WriteString(p.stdout, "\n")
		stores := []string{backupContacts, backupBilling, backupLogs}
		t := newTable("ACCOUNT", "CONTACTS", "BILLING", "LOGS")
		for _, r := range out.Reapplied {
			row := []string{r.AccountID}
			for _, s := range stores {
				if _, restored := out.Targets[s]; !restored {
					row = append(row, "-")
					continue
				}
				row = append(row, strconv.FormatInt(r.Items[s], 10))
			}
			t.add(row...)
		}
		if err := t.write(p.stdout); err != nil {
			return err
		}
	}
	if re.providerRefs > 0 {
		fmt.Fprintf(p.stdout, "\nThe restored billing copy keeps the payment provider's customer id of %s "+
			"(footprint provider_customer): the live billing worker deletes those customers at the provider.\n", accounts(int(re.providerRefs)))
	}
	return nil
}

// accounts is "1 account" or "N accounts".
func accounts(n int) string {
	if n == 1 {
		return "1 account"
	}
	return strconv.Itoa(n) + " accounts"
}

// lockedWriter serialises the writes of several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
