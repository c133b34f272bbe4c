package contactstore

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// The kinds of rows a footprint counts: the keys of worker.Footprint.Detail,
// one per table.
const (
	KindContactLists       = "contact_lists"
	KindContacts           = "contacts"
	KindContactListMembers = "contact_list_members"
	KindContactProperties  = "contact_properties"
)

// A purge walks the account's contacts in key order, a batch at a time: a
// look-up finds the next batch's key range, (from, hi], at most batchSize
// contacts after the key where the previous batch stopped; one transaction
// then deletes the properties, memberships and contacts whose contact id
// lies in that range (and, in the same round trip, looks up the range after
// it). The lists follow the same way once no contact is left.
//
// Why this shape (measured with PostgreSQL 15 on this project's machines;
// docs/benchmarks.md, "Contacts purge vs. PostgreSQL's own delete"):
//
//   - A contact's properties and memberships go in the same transaction as
//     the contact. Deleting a contact runs two foreign-key checks (one per
//     child table, each a look-up of the contact and an index probe of the
//     child), which are most of the cost of a purge and of a plain DELETE
//     alike; everything else is what the purge adds. When each table was
//     purged on its own (a ctid array of 5000 rows per statement), a
//     100,000-contact account took 61 statements for its properties, 41 for
//     its memberships and 21 for its contacts, and reached 0.55-0.70 of one
//     DELETE per table; by contact range it takes 21 transactions, which
//     PostgreSQL runs in about the time of the plain DELETEs (2.1-2.2 s
//     against 2.2-2.3 s, timed in psql).
//   - The range is a key range on the (account_id, ...) indexes, so every
//     delete is an index range scan, as PostgreSQL's own DELETE ... WHERE
//     account_id = $1 is, and it needs no second look-up of each row (the
//     ctid array did: an index scan to collect the ctids, then a Tid Scan).
//     "account_id = $1 AND key > $2 AND key <= $3" makes both ends of the
//     range bounds of the index scan. Row comparisons, "(account_id, key)
//     > ($1, $2)", would keep the primary key out of the plan, but btree
//     stops a scan only on the first column of a row comparison: every
//     batch read the index to the end of the account, and a 1,000,000-
//     contact account took 69.6 s against 29.4 s for the plain DELETEs.
//     With few accounts in a table (the tests' databases) the planner may
//     take the primary key and filter account_id; ids are then mostly in
//     account order anyway. With many accounts account_id = $1 is the
//     selective part and the (account_id, ...) index the cheaper one.
//   - The batch starts at the last key instead of at the beginning of the
//     account (keyset, not plain LIMIT). With plain LIMIT every batch scans
//     again the index entries of all rows the earlier batches deleted; while
//     any older snapshot is open (a long report, pg_dump, a stuck
//     transaction) those dead rows cannot be skipped and the purge turns
//     quadratic (19.8 s against 2.0 s keyset for 600k properties in batches
//     of 5000 while a snapshot was held).
//   - The child tables are found by contact id: every property and
//     membership of the account refers to a contact of the same account
//     (the foreign keys are on (account_id, contact_id)), so the contacts'
//     ranges cover them all, and once no contact is left no child is.
//   - One transaction holds the locks of batchSize contacts and their
//     children (with the demo data's shape, 3 properties and 1.7
//     memberships each: about 29,000 rows at the default 5000) for a few
//     hundred milliseconds at most, about as long as a batch of 5000
//     contacts alone took before, since their foreign-key checks dominate
//     either way. An account of any size never holds more.
//
// The deletes run children first, the foreign keys' order, so that the
// delete of a contact finds nothing left that refers to it; their checks
// run at the end of the contacts' statement and see the children deleted
// earlier in the same transaction.
const (
	boundContactsSQL = `
SELECT count(*), max(id) FROM (
	SELECT id FROM contacts
	WHERE account_id = $1 AND id > $2
	ORDER BY id
	LIMIT $3) b`

	deleteContactPropertiesSQL = `
DELETE FROM contact_properties
WHERE account_id = $1 AND contact_id > $2 AND contact_id <= $3`

	deleteContactListMembersSQL = `
DELETE FROM contact_list_members
WHERE account_id = $1 AND contact_id > $2 AND contact_id <= $3`

	deleteContactsSQL = `
DELETE FROM contacts
WHERE account_id = $1 AND id > $2 AND id <= $3`

	boundContactListsSQL = `
SELECT count(*), max(id) FROM (
	SELECT id FROM contact_lists
	WHERE account_id = $1 AND id > $2
	ORDER BY id
	LIMIT $3) b`

	deleteContactListsSQL = `
DELETE FROM contact_lists
WHERE account_id = $1 AND id > $2 AND id <= $3`
)

// purgeStep walks one parent table's keys; each batch deletes, in one
// transaction and in this order, the rows of deletes whose key lies in the
// batch's range.
type purgeStep struct {
	table   string
	bound   string
	deletes []string
}

// purgeSteps is a function, not a variable, so that nothing can reorder the
// steps at run time. Contacts before lists: memberships, which refer to
// both, go with their contacts.
func purgeSteps() [2]purgeStep {
	return [2]purgeStep{
		{KindContacts, boundContactsSQL, []string{deleteContactPropertiesSQL, deleteContactListMembersSQL, deleteContactsSQL}},
		{KindContactLists, boundContactListsSQL, []string{deleteContactListsSQL}},
	}
}

// ActionDelete is the one action the contacts store runs.
const ActionDelete = "delete"

// Purge deletes every contact property, list membership, contact and list of
// task.AccountID, in batches of at most the store's batch size of contacts
// (with their properties and memberships) or of lists, each batch its own
// short transaction. It returns the number of rows deleted across all
// tables; zero when nothing was left, which is how a repeated purge
// succeeds.
//
// A purge that stops half-way (an error, a cancelled ctx) has deleted whole
// batches only, and the next one carries on. On error the Result counts the
// rows deleted before it. ctx is checked between batches and cancels the
// running statement; the error then wraps ctx.Err(). Database and network
// errors are returned wrapped, for the runtime to retry. An account id that
// cannot be one (empty, or one that looks like an e-mail address) is a
// worker.PermanentError with the code "bad_task" wrapping
// ErrInvalidAccountID.
func (s *Store) Purge(ctx context.Context, task worker.Task) (worker.Result, error) {
	if err := checkAccountID(task.AccountID); err != nil {
		return worker.Result{}, worker.Permanentf("bad_task", "purge contacts: %w", err)
	}
	// Contacts are only ever deleted; a policy asking for anything else
	// is a mistake that must fail loudly, not be treated as a delete.
	if task.Action != ActionDelete && task.Action != "" {
		return worker.Result{}, worker.Permanentf("unsupported_action", "purge contacts: action %q is not supported (only %q)", task.Action, ActionDelete)
	}
	var res worker.Result
	for _, step := range purgeSteps() {
		n, err := s.purgeStep(ctx, step, task.AccountID)
		res.ItemsPurged += n
		if err != nil {
			return res, fmt.Errorf("delete %s of account %s: %w", step.table, task.AccountID, err)
		}
	}
	return res, nil
}

// purgeStep runs one step's batches until a whole pass over the account's
// key range, started from the beginning, finds nothing. The second pass is
// usually a single look-up that finds no key; it catches rows a keyset pass
// can miss: rows inserted behind the cursor while it ran.
//
// Every batch is one round trip: the look-up of the next range goes in the
// same pipeline as the deletes of this one. On a busy machine each round
// trip also waits for the scheduler, twice (client and server), which is
// what a plain DELETE per table does not pay.
func (s *Store) purgeStep(ctx context.Context, step purgeStep, accountID string) (int64, error) {
	const start = math.MinInt64
	var total, thisPass int64
	from := int64(start)
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	next, err := s.nextRange(ctx, step, accountID, from)
	if err != nil {
		return 0, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		full := next.keys >= int64(s.batchSize)
		after := batchRange{}
		if next.keys > 0 {
			// Where the look-up in the same pipeline starts: after this
			// range while the pass goes on, at the beginning when it ends.
			nextFrom := int64(start)
			if full {
				nextFrom = next.last
			}
			var n int64
			n, after, err = s.deleteRange(ctx, step, accountID, from, next.last, nextFrom)
			total += n
			thisPass += n
			if err != nil {
				return total, err
			}
			if s.afterBatch != nil {
				s.afterBatch(step.table, n)
			}
		}
		if full {
			from, next = next.last, after
			continue
		}
		if thisPass == 0 {
			return total, nil
		}
		from, thisPass = start, 0
		if next.keys == 0 {
			// The pass ended on an empty look-up (the batch before it was
			// exactly full): look again from the beginning.
			if err := ctx.Err(); err != nil {
				return total, err
			}
			if after, err = s.nextRange(ctx, step, accountID, from); err != nil {
				return total, err
			}
		}
		next = after
	}
}

// batchRange is what a step's look-up found after a key: how many keys (at
// most the batch size) and the last of them.
type batchRange struct {
	keys int64
	last int64
}

func scanRange(row pgx.Row) (batchRange, error) {
	var r batchRange
	var last *int64 // NULL when no key is left
	if err := row.Scan(&r.keys, &last); err != nil {
		return r, err
	}
	if last != nil {
		r.last = *last
	}
	return r, nil
}

// nextRange looks up the batch of keys after from.
func (s *Store) nextRange(ctx context.Context, step purgeStep, accountID string, from int64) (batchRange, error) {
	r, err := scanRange(s.pool.QueryRow(ctx, step.bound, accountID, from, s.batchSize))
	if err != nil {
		return r, fmt.Errorf("find the next batch: %w", err)
	}
	return r, nil
}

// deleteRange runs step's deletes for the keys in (from, to] and looks up
// the batch after nextFrom, in one transaction and one round trip: the
// statements are pipelined, and PostgreSQL runs everything up to the
// pipeline's sync as one implicit transaction, so a failure or a
// cancellation anywhere leaves the whole batch in place. It returns the
// rows deleted (0 on error) and the next batch.
func (s *Store) deleteRange(ctx context.Context, step purgeStep, accountID string, from, to, nextFrom int64) (int64, batchRange, error) {
	b := &pgx.Batch{}
	for _, q := range step.deletes {
		b.Queue(q, accountID, from, to)
	}
	b.Queue(step.bound, accountID, nextFrom, s.batchSize)
	br := s.pool.SendBatch(ctx, b)
	var n int64
	for range step.deletes {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close() // the error above is the one to report
			return 0, batchRange{}, fmt.Errorf("delete a batch: %w", err)
		}
		n += tag.RowsAffected()
	}
	next, err := scanRange(br.QueryRow())
	if err != nil {
		_ = br.Close()
		return 0, batchRange{}, fmt.Errorf("find the next batch: %w", err)
	}
	if err := br.Close(); err != nil {
		return 0, batchRange{}, fmt.Errorf("delete a batch: %w", err)
	}
	return n, next, nil
}

const footprintSQL = `
SELECT
	(SELECT count(*) FROM contact_lists t WHERE t.account_id = a.id),
	(SELECT count(*) FROM contacts t WHERE t.account_id = a.id),
	(SELECT count(*) FROM contact_list_members t WHERE t.account_id = a.id),
	(SELECT count(*) FROM contact_properties t WHERE t.account_id = a.id)
FROM unnest($1::text[]) WITH ORDINALITY AS a(id, n)
ORDER BY a.n`

// Footprint counts, for each of accountIDs, the rows each table still holds
// of it, in one statement of four index-only counts per account: quick for
// a handful of accounts, proportional to their size. It returns one entry
// per id in input order (repeated ids repeated), with all four kinds in
// Detail, zeros for an account with nothing stored. It changes nothing.
func (s *Store) Footprint(ctx context.Context, accountIDs []string) ([]worker.Footprint, error) {
	out := make([]worker.Footprint, 0, len(accountIDs))
	if len(accountIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, footprintSQL, accountIDs)
	if err != nil {
		return nil, fmt.Errorf("count contacts of %d accounts: %w", len(accountIDs), err)
	}
	defer rows.Close()
	for rows.Next() {
		var lists, contacts, members, props int64
		if err := rows.Scan(&lists, &contacts, &members, &props); err != nil {
			return nil, fmt.Errorf("count contacts of %d accounts: %w", len(accountIDs), err)
		}
		if len(out) == len(accountIDs) {
			return nil, fmt.Errorf("count contacts of %d accounts: more rows than accounts", len(accountIDs))
		}
		out = append(out, worker.Footprint{
			AccountID: accountIDs[len(out)],
			Items:     lists + contacts + members + props,
			Detail: map[string]int64{
				KindContactLists:       lists,
				KindContacts:           contacts,
				KindContactListMembers: members,
				KindContactProperties:  props,
			},
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count contacts of %d accounts: %w", len(accountIDs), err)
	}
	if len(out) != len(accountIDs) {
		return nil, fmt.Errorf("count contacts of %d accounts: got %d rows", len(accountIDs), len(out))
	}
	return out, nil
}
