package contactstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// contactRows lists what an account holds, independent of generated ids.
func contactRows(t *testing.T, s *Store, accountID string) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `
SELECT c.email || '|' || coalesce(c.name, '') || '|' ||
	coalesce((SELECT string_agg(p.key || '=' || p.value, ',' ORDER BY p.key) FROM contact_properties p WHERE p.contact_id = c.id), '') || '|' ||
	coalesce((SELECT string_agg(l.name, ',' ORDER BY l.name) FROM contact_list_members m JOIN contact_lists l ON l.id = m.list_id WHERE m.contact_id = c.id), '')
FROM contacts c WHERE c.account_id = $1 ORDER BY c.id`, accountID)
	if err != nil {
		t.Fatalf("read contacts: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatalf("read contacts: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read contacts: %v", err)
	}
	return out
}

func TestSeedWritesWhatItReports(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	var calls, lastDone, lastTotal int64
	res, err := s.Seed(context.Background(), "acc-000123", SeedOptions{Contacts: seedChunk + 500, Lists: 12, PropertiesPerContact: 6, Seed: 42},
		func(done, total int64) { calls, lastDone, lastTotal = calls+1, done, total })
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if res.AccountID != "acc-000123" || res.Contacts != seedChunk+500 || res.Lists != 12 || res.Properties != 6*res.Contacts {
		t.Errorf("SeedResult = %+v", res)
	}
	// Each contact joins the first list with p=0.7 and 11 others with 0.25.
	if perContact := float64(res.Members) / float64(res.Contacts); perContact < 3 || perContact > 4 {
		t.Errorf("%.2f memberships per contact, want about 3.45", perContact)
	}
	if calls != 2 || lastDone != lastTotal || lastTotal != res.Contacts {
		t.Errorf("progress called %d times, last (%d, %d); want 2 calls ending at (%d, %d)", calls, lastDone, lastTotal, res.Contacts, res.Contacts)
	}
	fp := footprint(t, s, "acc-000123")
	if fp.Detail[KindContacts] != res.Contacts || fp.Detail[KindContactLists] != res.Lists ||
		fp.Detail[KindContactListMembers] != res.Members || fp.Detail[KindContactProperties] != res.Properties {
		t.Errorf("footprint %v does not match %+v", fp.Detail, res)
	}

	var bad, distinct int
	err = s.pool.QueryRow(context.Background(), `
SELECT count(*) FILTER (WHERE email !~ '^[a-z_.]+[0-9]+@[a-z0-9-]+\.example$'), count(DISTINCT email)
FROM contacts WHERE account_id = 'acc-000123'`).Scan(&bad, &distinct)
	if err != nil {
		t.Fatalf("check addresses: %v", err)
	}
	if bad != 0 || int64(distinct) != res.Contacts {
		t.Errorf("%d addresses outside .example or malformed, %d distinct of %d", bad, distinct, res.Contacts)
	}
}

func TestSeedIsDeterministicPerSeedAndAccount(t *testing.T) {
	t.Parallel()
	a, b := newStore(t), newStore(t)
	ctx := context.Background()
	opts := SeedOptions{Contacts: 50, Lists: 3, PropertiesPerContact: 4, Seed: 9}
	for _, s := range []*Store{a, b} {
		// Other data first, so that the generated ids differ between the two.
		if s == b {
			if _, err := s.Seed(ctx, "acc-other", opts, nil); err != nil {
				t.Fatalf("Seed: %v", err)
			}
		}
		if _, err := s.Seed(ctx, "acc-1", opts, nil); err != nil {
			t.Fatalf("Seed: %v", err)
		}
	}
	if !slices.Equal(contactRows(t, a, "acc-1"), contactRows(t, b, "acc-1")) {
		t.Error("the same Seed and account gave different data")
	}
	if slices.Equal(contactRows(t, b, "acc-1"), contactRows(t, b, "acc-other")) {
		t.Error("two accounts with the same Seed got the same data")
	}
}

func TestSeedAgainAdds(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	opts := SeedOptions{Contacts: 20, Lists: 2, PropertiesPerContact: 1, Seed: 1}
	first, err := s.Seed(context.Background(), "acc-1", opts, nil)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if _, err := s.Seed(context.Background(), "acc-1", opts, nil); err != nil {
		t.Fatalf("second Seed: %v", err)
	}
	fp := footprint(t, s, "acc-1")
	if fp.Detail[KindContacts] != 2*first.Contacts || fp.Detail[KindContactLists] != 2*first.Lists {
		t.Errorf("after seeding twice: %v, want twice %+v", fp.Detail, first)
	}
}

func TestSeedDefaults(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	start := time.Now()
	res, err := s.Seed(context.Background(), "acc-1", SeedOptions{}, nil)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	took := time.Since(start)
	t.Logf("seeded %d contacts, %d members, %d properties in %s (%.0f contacts/s)",
		res.Contacts, res.Members, res.Properties, took, float64(res.Contacts)/took.Seconds())
	if res.Contacts != 5000 || res.Lists != 5 || res.Properties != 3*5000 {
		t.Errorf("SeedResult = %+v, want 5000 contacts, 5 lists, 15000 properties", res)
	}
}

func TestSeedRejects(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	tests := []struct {
		name    string
		account string
		opts    SeedOptions
		wantIs  error
	}{
		{name: "empty account", account: "", wantIs: ErrInvalidAccountID},
		{name: "e-mail as account", account: "jane@example.com", wantIs: ErrInvalidAccountID},
		{name: "negative contacts", account: "acc-1", opts: SeedOptions{Contacts: -1}, wantIs: ErrInvalidSeedOptions},
		{name: "negative lists", account: "acc-1", opts: SeedOptions{Lists: -1}, wantIs: ErrInvalidSeedOptions},
		{name: "too many properties", account: "acc-1", opts: SeedOptions{PropertiesPerContact: 7}, wantIs: ErrInvalidSeedOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Seed(context.Background(), tt.account, tt.opts, nil)
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Seed = %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.account != "" && strings.Contains(tt.account, "@") && strings.Contains(err.Error(), tt.account) {
				t.Errorf("error %q repeats the address", err)
			}
		})
	}
	if fp := footprint(t, s, "acc-1"); fp.Items != 0 {
		t.Errorf("rejected seeds wrote %v", fp.Detail)
	}
}

// A Seed that fails half-way leaves nothing behind: it is one transaction.
func TestSeedCancelledWritesNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := s.Seed(ctx, "acc-1", SeedOptions{Contacts: 3 * seedChunk, Lists: 1, PropertiesPerContact: 1},
		func(done, total int64) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Seed = %v, want it to wrap context.Canceled", err)
	}
	if fp := footprint(t, s, "acc-1"); fp.Items != 0 {
		t.Errorf("cancelled Seed left %v", fp.Detail)
	}
}
