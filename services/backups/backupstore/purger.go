package backupstore

import (
	"context"
	"fmt"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// The actions of the backups category.
const (
	// ActionSuppress writes the account into the restore ledger: from then
	// on no restore brings its data back. This is the moment its data in
	// the backups is beyond use.
	ActionSuppress = "suppress"
	// ActionVerifyRotated succeeds once no snapshot holds the account any
	// more: the last one that did has rotated out.
	ActionVerifyRotated = "verify_rotated"
)

// ClassNotRotated is the worker.TransientError class of a verify_rotated
// task that has to wait for rotation: expected, not a fault.
const ClassNotRotated = "not_rotated"

// The kinds of a backups footprint: the keys of worker.Footprint.Detail.
const (
	// KindSnapshots counts the catalogued snapshots holding the account
	// (also the footprint's Items).
	KindSnapshots = "snapshots"
	// KindInLedger is 1 when the account is in the restore ledger, else 0.
	KindInLedger = "in_ledger"
	// KindSnapshotsUnchecked counts the snapshots whose contents are
	// unknown (incomplete, or with a damaged catalog entry); they may hold
	// any account.
	KindSnapshotsUnchecked = "snapshots_unchecked"
)

// Purger is the backups category's worker.Purger: it suppresses accounts in
// the restore ledger and verifies against the catalog that they have
// rotated out of every snapshot.
type Purger struct {
	store  *Store
	ledger *Ledger
}

var _ worker.Purger = (*Purger)(nil)

// NewPurger returns the purger over store's catalog and ledger.
func NewPurger(store *Store, ledger *Ledger) *Purger {
	return &Purger{store: store, ledger: ledger}
}

// Purge runs the task's action:
//
//   - "suppress" writes the ledger entry (account, job) and succeeds once it
//     is committed; ItemsPurged is 1 for a new entry, 0 when a redelivery
//     finds it there.
//   - "verify_rotated" succeeds (0 items) when no catalogued snapshot holds
//     the account and no snapshot's contents are unknown. Otherwise it
//     returns a transient error wrapping ErrNotRotated that says how many
//     snapshots still hold the account and when the last rotates out,
//     as a worker.TransientError of class ClassNotRotated.
//
// Any other action is a worker.PermanentError with the code
// "unsupported_action"; an account id that cannot be one, the code
// "bad_task". Database and file system errors are transient.
func (p *Purger) Purge(ctx context.Context, task worker.Task) (worker.Result, error) {
	if err := checkAccountID(task.AccountID); err != nil {
		return worker.Result{}, worker.Permanentf("bad_task", "backups %s: %w", task.Action, err)
	}
	switch task.Action {
	case ActionSuppress:
		if err := checkID(task.JobID); err != nil {
			return worker.Result{}, worker.Permanentf("bad_task", "backups suppress: invalid job id: %w", err)
		}
		added, err := p.ledger.Suppress(ctx, task.AccountID, task.JobID)
		if err != nil {
			return worker.Result{}, err
		}
		if added {
			return worker.Result{ItemsPurged: 1}, nil
		}
		return worker.Result{}, nil
	case ActionVerifyRotated:
		return worker.Result{}, p.verifyRotated(ctx, task.AccountID)
	default:
		return worker.Result{}, worker.Permanentf("unsupported_action",
			"backups: action %q is not supported (only %q and %q)", task.Action, ActionSuppress, ActionVerifyRotated)
	}
}

func (p *Purger) verifyRotated(ctx context.Context, accountID string) error {
	inv, err := p.store.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("verify account %s rotated out: %w", accountID, err)
	}
	holding, last := 0, time.Time{}
	for _, s := range inv.Snapshots {
		if s.Holds(accountID) {
			holding++
			last = s.CreatedAt // oldest first: the last is the newest
		}
	}
	if holding > 0 {
		rotates := p.store.ExpiresAt(last)
		when := "rotates out at " + rotates.Format(time.RFC3339)
		if !rotates.After(p.store.now()) {
			when = "expired at " + rotates.Format(time.RFC3339) + " but was not yet deleted (run the rotation)"
		}
		return worker.Transient(ClassNotRotated, fmt.Errorf("%w: account %s is still held by %d snapshots; the last %s (retention %s)",
			ErrNotRotated, accountID, holding, when, p.store.retention))
	}
	if n := len(inv.Incomplete) + len(inv.Damaged); n > 0 {
		return worker.Transient(ClassNotRotated, fmt.Errorf("%w: account %s: %d snapshots cannot be checked (%d incomplete: being taken, "+
			"or abandoned until the next rotation; %d with a damaged catalog entry: repair or delete them)",
			ErrNotRotated, accountID, n, len(inv.Incomplete), len(inv.Damaged)))
	}
	return nil
}

// Footprint returns per account the number of catalogued snapshots that
// hold it (Items, and Detail "snapshots"), whether it is in the restore
// ledger ("in_ledger" 0 or 1), and how many snapshots cannot be checked
// ("snapshots_unchecked", the same for every account). One entry per id,
// in order. It changes nothing.
func (p *Purger) Footprint(ctx context.Context, accountIDs []string) ([]worker.Footprint, error) {
	out := make([]worker.Footprint, 0, len(accountIDs))
	if len(accountIDs) == 0 {
		return out, nil
	}
	inv, err := p.store.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("count snapshots of %d accounts: %w", len(accountIDs), err)
	}
	entries, err := p.ledger.Entries(ctx, accountIDs)
	if err != nil {
		return nil, err
	}
	inLedger := map[string]bool{}
	for _, e := range entries {
		inLedger[e.AccountID] = true
	}
	unchecked := int64(len(inv.Incomplete) + len(inv.Damaged))
	for _, id := range accountIDs {
		var n int64
		for _, s := range inv.Snapshots {
			if s.Holds(id) {
				n++
			}
		}
		var l int64
		if inLedger[id] {
			l = 1
		}
		out = append(out, worker.Footprint{
			AccountID: id,
			Items:     n,
			Detail:    map[string]int64{KindSnapshots: n, KindInLedger: l, KindSnapshotsUnchecked: unchecked},
		})
	}
	return out, nil
}

// Ready checks the ledger's database and the backup root, for readiness
// probes.
func (p *Purger) Ready(ctx context.Context) error {
	if err := p.ledger.Ping(ctx); err != nil {
		return err
	}
	return p.store.Check(ctx)
}
