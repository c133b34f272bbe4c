package backupstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/pgstore"
)

func TestSuppressIsIdempotentPerAccountAndJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	steps := []struct {
		account, job string
		wantAdded    bool
	}{
		{"acc-a", "job-1", true},
		{"acc-a", "job-1", false}, // redelivered task
		{"acc-a", "job-2", true},  // deleted, restored, deleted again
		{"acc-b", "job-3", true},
	}
	for i, st := range steps {
		added, err := l.Suppress(ctx, st.account, st.job)
		if err != nil || added != st.wantAdded {
			t.Fatalf("step %d: Suppress(%s, %s) = %v, %v; want %v", i, st.account, st.job, added, err, st.wantAdded)
		}
	}
	entries, err := l.Entries(ctx, []string{"acc-a", "acc-x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].JobID != "job-1" || entries[1].JobID != "job-2" || entries[0].ErasedAt.IsZero() {
		t.Errorf("Entries(acc-a) = %+v, want job-1 and job-2 with times", entries)
	}
}

// Concurrent replicas handling a redelivered task write one entry.
func TestSuppressConcurrently(t *testing.T) {
	t.Parallel()
	l := newTestLedger(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	for range 8 {
		wg.Go(func() {
			ok, err := l.Suppress(context.Background(), "acc-a", "job-1")
			if err != nil {
				t.Errorf("Suppress: %v", err)
			}
			if ok {
				mu.Lock()
				added++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if added != 1 {
		t.Errorf("%d concurrent Suppress calls reported a new entry, want 1", added)
	}
}

func TestSuppressRefusesBadIDs(t *testing.T) {
	t.Parallel()
	l := newTestLedger(t)
	tests := []struct {
		name, account, job string
		wantIs             error
	}{
		{name: "empty account", account: "", job: "job-1", wantIs: ErrInvalidAccountID},
		{name: "e-mail address", account: "jane@example.org", job: "job-1", wantIs: ErrInvalidAccountID},
		{name: "control characters", account: "acc\n1", job: "job-1", wantIs: ErrInvalidAccountID},
		{name: "empty job", account: "acc-1", job: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Suppress(context.Background(), tt.account, tt.job)
			if err == nil || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Fatalf("Suppress = %v, want an error wrapping %v", err, tt.wantIs)
			}
			if tt.account != "" && strings.Contains(err.Error(), tt.account) {
				t.Errorf("error %q repeats the refused id", err)
			}
		})
	}
}

func TestSuppressedSelectsNewerEntriesAndHeldAccounts(t *testing.T) {
	t.Parallel()
	l := newTestLedger(t)
	ledgerExec(t, l, `INSERT INTO restore_ledger VALUES
		('acc-old', 'j1', now() - interval '30 days'),
		('acc-old-held', 'j2', now() - interval '30 days'),
		('acc-new', 'j3', now()),
		('acc-new', 'j4', now()),
		('acc-b', 'j5', now() - interval '2 hours')`)
	since := time.Now().Add(-3 * time.Hour)
	got, err := l.Suppressed(context.Background(), since, []string{"acc-old-held", "acc-never-erased"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"acc-b", "acc-new", "acc-old-held"}; !slices.Equal(got, want) {
		t.Errorf("Suppressed = %v, want %v", got, want)
	}
	got, err = l.Suppressed(context.Background(), time.Now().Add(time.Hour), nil)
	if err != nil || len(got) != 0 {
		t.Errorf("Suppressed(future, nil) = %v, %v; want none", got, err)
	}
}

// Connecting and migrating are pgstore's (tested there); this checks that
// the ledger's schema is the one migrated, that migrating again changes
// nothing, and that a newer schema is refused.
func TestLedgerMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	if err := l.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if _, err := l.Suppress(ctx, "acc-a", "job-1"); err != nil {
		t.Fatalf("Suppress after migrating: %v", err)
	}
	ledgerExec(t, l, "UPDATE "+versionTable+" SET version = version + 1")
	err := l.Migrate(ctx)
	if !errors.Is(err, pgstore.ErrSchemaNewer) || !strings.HasPrefix(err.Error(), "migrate backups database: ") {
		t.Errorf("Migrate of a newer schema = %v, want a backups database error wrapping pgstore.ErrSchemaNewer", err)
	}
}

func TestOpenLedgerNamesTheDatabase(t *testing.T) {
	t.Parallel()
	_, err := OpenLedger(context.Background(), "postgres://%zz")
	if err == nil || !strings.Contains(err.Error(), "parse backups database dsn") {
		t.Errorf("OpenLedger of a malformed DSN = %v, want an error naming the backups database", err)
	}
}
