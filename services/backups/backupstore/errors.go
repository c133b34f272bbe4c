package backupstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Every error this package returns on purpose wraps one of these, so that
// callers (the worker, erasectl) can tell them apart with errors.Is.
var (
	// ErrInvalidOption is wrapped by the errors of New for an invalid Option.
	ErrInvalidOption = errors.New("invalid backup store option")
	// ErrInvalidSource is wrapped by TakeSnapshot's error for an unusable
	// Source (no parts, a bad database name, no account tables, ...).
	ErrInvalidSource = errors.New("invalid snapshot source")
	// ErrInvalidAccountID is wrapped for an account id that cannot be one:
	// in a task (inside a permanent worker error), or one listed by a
	// snapshot source (the snapshot is then refused, so that the catalog
	// never records something that may be personal data).
	ErrInvalidAccountID = errors.New("invalid account id")
	// ErrSnapshotNotFound is wrapped by Get and Restore when no catalogued
	// snapshot has the id.
	ErrSnapshotNotFound = errors.New("snapshot not found")
	// ErrDamagedManifest is wrapped when a catalog entry cannot be read or
	// decoded. List returns it together with the readable snapshots.
	ErrDamagedManifest = errors.New("damaged snapshot catalog entry")
	// ErrDamagedSnapshot is wrapped by Restore when a snapshot's file is
	// missing or does not match the checksum in its catalog entry.
	ErrDamagedSnapshot = errors.New("damaged snapshot")
	// ErrInvalidTarget is wrapped by Restore for an unusable RestoreTarget
	// (nothing to restore, a database the snapshot does not hold, a log
	// directory that is not empty).
	ErrInvalidTarget = errors.New("invalid restore target")
	// ErrTargetNotEmpty is wrapped by Restore when a target database already
	// holds tables: a restore goes into a new, empty database only.
	ErrTargetNotEmpty = errors.New("restore target database is not empty")
	// ErrReapplyFailed is wrapped by Restore when the ledger could not be
	// read or the Reapplier failed: the restored data still holds erased
	// accounts and must not be used.
	ErrReapplyFailed = errors.New("re-applying erasures to the restored data failed")
	// ErrReapplyIncomplete is wrapped by Restore when the Reapplier reported
	// success but a restored database still holds an erased account.
	ErrReapplyIncomplete = errors.New("erased accounts are still in the restored data")
	// ErrNotRotated is wrapped by the verify_rotated action while a
	// catalogued snapshot still holds the account, or while a snapshot
	// cannot be checked. The worker runtime retries it.
	ErrNotRotated = errors.New("account not yet rotated out of the backups")
)

// maxIDLen is far above any real id ("acc-000123", a UUID); it only keeps
// garbage out of the ledger and the catalog.
const maxIDLen = 200

// checkAccountID rejects ids that cannot name an account. Account ids are
// internal ("acc-000123"); one with an "@" is most likely an e-mail address
// passed by mistake, so it is refused, and the returned error never repeats
// the id, which would put that address into logs and reports.
func checkAccountID(id string) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidAccountID, err)
	}
	if strings.ContainsRune(id, '@') {
		return fmt.Errorf("%w: contains '@' (an e-mail address instead of an internal id?)", ErrInvalidAccountID)
	}
	return nil
}

// checkID rejects empty, overlong and unprintable ids. The error never
// repeats the id.
func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("empty")
	case len(id) > maxIDLen:
		return fmt.Errorf("longer than %d bytes", maxIDLen)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0:
		return errors.New("contains white space, control or invalid characters")
	}
	return nil
}
