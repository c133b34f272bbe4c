package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
)

// PurgeRatio compares the contacts worker's purge with PostgreSQL's own
// delete of the same amount of data from the same tables.
type PurgeRatio struct {
	Accounts           int `json:"accounts"`
	ContactsPerAccount int `json:"contacts_per_account"`
	// Rows deleted by each side (all four tables); the two sides get
	// accounts seeded alike, so the counts match.
	PurgeRows       int64   `json:"purge_rows"`
	RawRows         int64   `json:"raw_rows"`
	PurgeSeconds    float64 `json:"purge_seconds"`
	RawSeconds      float64 `json:"raw_seconds"`
	PurgeRowsPerSec float64 `json:"purge_rows_per_sec"`
	RawRowsPerSec   float64 `json:"raw_rows_per_sec"`
	// Ratio is the purge's rows/s over the raw delete's.
	Ratio float64 `json:"ratio"`
}

// ContactsResult holds both shapes the target names.
type ContactsResult struct {
	Big  PurgeRatio `json:"big_account"`
	Many PurgeRatio `json:"many_accounts"`
	// BatchSize is the purge's rows per statement (the worker's default).
	BatchSize int `json:"batch_size"`
}

// rawDeleteTables are the contacts tables, children first as the foreign
// keys require.
var rawDeleteTables = []string{"contact_properties", "contact_list_members", "contacts", "contact_lists"}

// measureContacts seeds, in a database of its own, 2×bigPairs accounts of
// big contacts and 2×accounts accounts of perAccount, then erases half of
// each shape with contactstore's Purge (what the worker runs) and the other
// half with one plain DELETE … WHERE account_id = $1 per table in one
// transaction, alternating which goes first.
func measureContacts(ctx context.Context, dsn string, big, bigPairs, accounts, perAccount int, progress func(string)) (ContactsResult, error) {
	res := ContactsResult{BatchSize: contactstore.DefaultBatchSize}
	st, err := contactstore.Open(ctx, dsn)
	if err != nil {
		return res, fmt.Errorf("open the contacts database: %w", err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return res, fmt.Errorf("migrate the contacts database: %w", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return res, fmt.Errorf("connect to the contacts database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	seedNo := int64(0)
	seed := func(id string, n int) error {
		seedNo++
		// A big account takes minutes to seed: a line every 10 s.
		last := time.Now()
		_, err := st.Seed(ctx, id, contactstore.SeedOptions{Contacts: n, Lists: 5, PropertiesPerContact: 3, Seed: seedNo}, func(done, total int64) {
			if time.Since(last) >= 10*time.Second {
				progress(fmt.Sprintf("contacts: seeding account %s, %d/%d contacts", id, done, total))
				last = time.Now()
			}
		})
		if err != nil {
			return fmt.Errorf("seed contacts: %w", err)
		}
		return nil
	}
	// Accounts that stay, so that every delete runs against tables that
	// hold other accounts too.
	for i := range 3 {
		if err := seed(fmt.Sprintf("stay-%d", i), min(perAccount, 1000)); err != nil {
			return res, err
		}
	}

	run := func(name string, n, size int) (PurgeRatio, error) {
		r := PurgeRatio{Accounts: n, ContactsPerAccount: size}
		start := time.Now()
		for i := range n {
			if err := seed(fmt.Sprintf("%s-purge-%d", name, i), size); err != nil {
				return r, err
			}
			if err := seed(fmt.Sprintf("%s-raw-%d", name, i), size); err != nil {
				return r, err
			}
			if time.Since(start) > time.Second || i == n-1 {
				progress(fmt.Sprintf("contacts %s: seeded %d/%d account pairs of %d contacts", name, i+1, n, size))
				start = time.Now()
			}
		}
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
			return r, fmt.Errorf("vacuum the contacts database: %w", err)
		}
		var purgeTime, rawTime time.Duration
		for i := range n {
			purge := func() error {
				t0 := time.Now()
				out, err := st.Purge(ctx, worker.Task{JobID: "bench", AccountID: fmt.Sprintf("%s-purge-%d", name, i),
					Category: "contacts", Stage: "erase", Action: contactstore.ActionDelete})
				purgeTime += time.Since(t0)
				r.PurgeRows += out.ItemsPurged
				if err != nil {
					return fmt.Errorf("purge contacts: %w", err)
				}
				return nil
			}
			raw := func() error {
				t0 := time.Now()
				n, err := rawDelete(ctx, conn, fmt.Sprintf("%s-raw-%d", name, i))
				rawTime += time.Since(t0)
				r.RawRows += n
				return err
			}
			first, second := purge, raw
			if i%2 == 1 {
				first, second = raw, purge
			}
			if err := first(); err != nil {
				return r, err
			}
			if err := second(); err != nil {
				return r, err
			}
		}
		r.PurgeSeconds, r.RawSeconds = purgeTime.Seconds(), rawTime.Seconds()
		if r.PurgeSeconds > 0 && r.RawSeconds > 0 {
			r.PurgeRowsPerSec = float64(r.PurgeRows) / r.PurgeSeconds
			r.RawRowsPerSec = float64(r.RawRows) / r.RawSeconds
			r.Ratio = r.PurgeRowsPerSec / r.RawRowsPerSec
		}
		progress(fmt.Sprintf("contacts %s: purge %.0f rows/s, raw delete %.0f rows/s, ratio %.2f", name, r.PurgeRowsPerSec, r.RawRowsPerSec, r.Ratio))
		return r, nil
	}
	if res.Big, err = run("big", bigPairs, big); err != nil {
		return res, err
	}
	if res.Many, err = run("many", accounts, perAccount); err != nil {
		return res, err
	}
	return res, nil
}

// rawDelete is the baseline: one unbatched DELETE … WHERE account_id = $1
// per table, in one transaction, as a naive purge would do it.
func rawDelete(ctx context.Context, conn *pgx.Conn, account string) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin the raw delete: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var rows int64
	for _, table := range rawDeleteTables {
		tag, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE account_id = $1", account)
		if err != nil {
			return rows, fmt.Errorf("raw delete from %s: %w", table, err)
		}
		rows += tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return rows, fmt.Errorf("commit the raw delete: %w", err)
	}
	return rows, nil
}
