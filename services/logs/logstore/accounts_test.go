package logstore

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

func accounts(t testing.TB, s *Store) []string {
	t.Helper()
	got, err := s.Accounts(context.Background())
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	return got
}

// Accounts names every account with records, sealed or open, also those
// another process wrote, and forgets erased ones.
func TestAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	if got := accounts(t, s); len(got) != 0 {
		t.Fatalf("empty store: Accounts = %v, want none", got)
	}

	seedAccounts(t, s, smallSeed(), "acc-2", "acc-1")
	openHour := testStart.Add(5 * time.Hour)
	open := append(records("acc-3", openHour, 2), records("acc-1", openHour, 1)...)
	if err := s.Append(ctx, openHour, open); err != nil {
		t.Fatalf("Append: %v", err)
	}
	// A line that is no record of an account is never listed.
	p := s.paths(hourOf(openHour))
	f, err := os.OpenFile(p.open, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"account_id":"a@b.example","event":"sent"}` + "\n" + `{"torn":` + "\n"); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if got, want := accounts(t, s), []string{"acc-1", "acc-2", "acc-3"}; !slices.Equal(got, want) {
		t.Fatalf("Accounts = %v, want %v", got, want)
	}

	// Another process seeds and seals; this store sees it.
	other := openStore(t, root)
	seedAccounts(t, other, SeedOptions{Hours: 1, RecordsPerHour: 5, Start: testStart.Add(10 * time.Hour)}, "acc-4")
	if err := other.Seal(ctx, openHour); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if got, want := accounts(t, s), []string{"acc-1", "acc-2", "acc-3", "acc-4"}; !slices.Equal(got, want) {
		t.Fatalf("after another process wrote: Accounts = %v, want %v", got, want)
	}

	// A missing sidecar is rebuilt from its segment.
	if err := os.Remove(s.paths(hourOf(testStart)).sidecar); err != nil {
		t.Fatal(err)
	}
	if got, want := accounts(t, s), []string{"acc-1", "acc-2", "acc-3", "acc-4"}; !slices.Equal(got, want) {
		t.Fatalf("after a sidecar was lost: Accounts = %v, want %v", got, want)
	}

	for _, id := range []string{"acc-1", "acc-3"} {
		if _, err := purge(ctx, s, id); err != nil {
			t.Fatalf("Purge %s: %v", id, err)
		}
	}
	if got, want := accounts(t, s), []string{"acc-2", "acc-4"}; !slices.Equal(got, want) {
		t.Errorf("after erasing acc-1 and acc-3: Accounts = %v, want %v", got, want)
	}
}

// An open segment is read under its hour's shared lock: a writer holding
// the lock keeps Accounts waiting, and a cancelled wait is an error.
func TestAccountsWaitsForTheWriter(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	hour := testStart
	if err := s.Append(context.Background(), hour, records("acc-1", hour, 1)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	l, err := s.lockHour(context.Background(), s.paths(hourOf(hour)), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Accounts(ctx); err == nil {
		t.Fatal("Accounts succeeded while a writer held the hour's lock")
	}
	l.unlock()
	if got := accounts(t, s); !slices.Equal(got, []string{"acc-1"}) {
		t.Errorf("Accounts = %v, want [acc-1]", got)
	}
}
