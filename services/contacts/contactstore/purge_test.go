package contactstore

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// smallSeed keeps test accounts small but gives every table rows.
func smallSeed() SeedOptions { return SeedOptions{Contacts: 300, Lists: 4, PropertiesPerContact: 3} }

func seedAccounts(t *testing.T, s *Store, opts SeedOptions, ids ...string) {
	t.Helper()
	for i, id := range ids {
		o := opts
		o.Seed = int64(i + 1)
		if _, err := s.Seed(context.Background(), id, o, nil); err != nil {
			t.Fatalf("Seed %s: %v", id, err)
		}
	}
}

func footprint(t *testing.T, s *Store, id string) worker.Footprint {
	t.Helper()
	fps, err := s.Footprint(context.Background(), []string{id})
	if err != nil {
		t.Fatalf("Footprint %s: %v", id, err)
	}
	return fps[0]
}

func purge(ctx context.Context, s *Store, id string) (worker.Result, error) {
	return s.Purge(ctx, worker.Task{JobID: "job-1", AccountID: id, Category: "contacts", Stage: "erase", Action: "delete", Attempt: 1})
}

func TestPurgeErasesOneAccountOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []Option
	}{
		{name: "default batch size"},
		{name: "batch size 7", opts: []Option{WithBatchSize(7)}},
		// Smaller than one contact's properties: batches end half-way
		// through a contact's rows.
		{name: "batch size 2", opts: []Option{WithBatchSize(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := smallSeed()
			if len(tt.opts) > 0 {
				opts.Contacts = 60 // keep the number of statements down
			}
			s := newStore(t, tt.opts...)
			seedAccounts(t, s, opts, "acc-000001", "acc-000002", "acc-000003")
			ctx := context.Background()
			before, err := s.Footprint(ctx, []string{"acc-000001", "acc-000002", "acc-000003"})
			if err != nil {
				t.Fatalf("Footprint before: %v", err)
			}
			for _, fp := range before {
				for kind, n := range fp.Detail {
					if n == 0 {
						t.Fatalf("seeded account %s has no %s", fp.AccountID, kind)
					}
				}
			}

			res, err := purge(ctx, s, "acc-000002")
			if err != nil {
				t.Fatalf("Purge: %v", err)
			}
			if res.ItemsPurged != before[1].Items {
				t.Errorf("ItemsPurged = %d, want the footprint before, %d", res.ItemsPurged, before[1].Items)
			}

			after, err := s.Footprint(ctx, []string{"acc-000001", "acc-000002", "acc-000003"})
			if err != nil {
				t.Fatalf("Footprint after: %v", err)
			}
			want := map[string]int64{KindContactLists: 0, KindContacts: 0, KindContactListMembers: 0, KindContactProperties: 0}
			if after[1].Items != 0 || !maps.Equal(after[1].Detail, want) {
				t.Errorf("footprint of purged account = %d %v, want all zero", after[1].Items, after[1].Detail)
			}
			for _, i := range []int{0, 2} {
				if after[i].Items != before[i].Items || !maps.Equal(after[i].Detail, before[i].Detail) {
					t.Errorf("footprint of %s changed: %v, was %v", after[i].AccountID, after[i].Detail, before[i].Detail)
				}
			}

			again, err := purge(ctx, s, "acc-000002")
			if err != nil || again.ItemsPurged != 0 {
				t.Errorf("second Purge = %d, %v; want 0, nil", again.ItemsPurged, err)
			}
		})
	}
}

func TestPurgeUnknownAccount(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	res, err := purge(context.Background(), s, "acc-404")
	if err != nil || res.ItemsPurged != 0 {
		t.Errorf("Purge of an unknown account = %d, %v; want 0, nil", res.ItemsPurged, err)
	}
}

func TestPurgeRejectsBadAccountID(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	tests := []struct {
		name string
		give string
	}{
		{name: "empty", give: ""},
		{name: "e-mail address", give: "jane.doe@example.com"},
		{name: "white space", give: "acc 1"},
		{name: "too long", give: strings.Repeat("a", maxAccountIDLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := purge(context.Background(), s, tt.give)
			var pe *worker.PermanentError
			if !errors.As(err, &pe) || pe.Code != "bad_task" {
				t.Fatalf("Purge(%q) = %v, want a permanent bad_task error", tt.give, err)
			}
			if !errors.Is(err, ErrInvalidAccountID) {
				t.Errorf("Purge(%q) = %v, want it to wrap ErrInvalidAccountID", tt.give, err)
			}
			if tt.give != "" && strings.Contains(err.Error(), tt.give) {
				t.Errorf("error %q repeats the rejected id", err)
			}
		})
	}
}

func TestPurgeCancelled(t *testing.T) {
	t.Parallel()

	t.Run("before it starts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		seedAccounts(t, s, SeedOptions{Contacts: 20, Lists: 2, PropertiesPerContact: 1}, "acc-1")
		before := footprint(t, s, "acc-1")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := purge(ctx, s, "acc-1")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Purge = %v, want it to wrap context.Canceled", err)
		}
		if worker.IsPermanent(err) {
			t.Errorf("cancellation must not be permanent: %v", err)
		}
		if res.ItemsPurged != 0 || footprint(t, s, "acc-1").Items != before.Items {
			t.Errorf("a cancelled purge deleted rows")
		}
	})

	// Cancelled between batches, the purge stops with whole batches done
	// (7 contacts each, with their properties and memberships), and the
	// next one finishes the job.
	t.Run("half-way", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, WithBatchSize(7))
		seedAccounts(t, s, SeedOptions{Contacts: 40, Lists: 2, PropertiesPerContact: 2}, "acc-1")
		before := footprint(t, s, "acc-1")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		batches := 0
		s.afterBatch = func(table string, deleted int64) {
			if batches++; batches == 3 {
				cancel()
			}
		}
		res, err := purge(ctx, s, "acc-1")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Purge = %v, want it to wrap context.Canceled", err)
		}
		if batches != 3 {
			t.Errorf("ran %d batches, want to stop after 3", batches)
		}
		mid := footprint(t, s, "acc-1")
		if res.ItemsPurged == 0 || mid.Items != before.Items-res.ItemsPurged {
			t.Errorf("ItemsPurged = %d, footprint %d -> %d; want the rows purged gone", res.ItemsPurged, before.Items, mid.Items)
		}
		if gone := before.Detail[KindContacts] - mid.Detail[KindContacts]; gone != 3*7 {
			t.Errorf("%d contacts gone, want 3 batches of 7", gone)
		}
		if mid.Detail[KindContactLists] != before.Detail[KindContactLists] {
			t.Errorf("lists deleted while contacts were left: %v", mid.Detail)
		}

		s.afterBatch = nil
		rest, err := purge(context.Background(), s, "acc-1")
		if err != nil {
			t.Fatalf("Purge after cancel: %v", err)
		}
		if rest.ItemsPurged != mid.Items || footprint(t, s, "acc-1").Items != 0 {
			t.Errorf("resumed Purge removed %d of %d rows", rest.ItemsPurged, mid.Items)
		}
	})
}

// A batch is one transaction: when the delete of its contacts fails, their
// properties and memberships, deleted first, stay too.
func TestPurgeBatchIsAtomic(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithBatchSize(7))
	seedAccounts(t, s, SeedOptions{Contacts: 20, Lists: 2, PropertiesPerContact: 2}, "acc-1")
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `
CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'contact deletes refused by the test';
END $$;
CREATE TRIGGER refuse_delete BEFORE DELETE ON contacts FOR EACH ROW EXECUTE FUNCTION refuse_delete()`); err != nil {
		t.Fatalf("create a trigger that refuses deletes: %v", err)
	}
	before := footprint(t, s, "acc-1")
	res, err := purge(ctx, s, "acc-1")
	if err == nil || !strings.Contains(err.Error(), "refused by the test") {
		t.Fatalf("Purge = %v, want the trigger's error", err)
	}
	after := footprint(t, s, "acc-1")
	if res.ItemsPurged != 0 || !maps.Equal(after.Detail, before.Detail) {
		t.Errorf("a failed batch deleted rows: ItemsPurged %d, footprint %v, was %v", res.ItemsPurged, after.Detail, before.Detail)
	}
}

// Rows that appear behind the cursor while a purge runs (a late write of
// the platform) are found by the closing pass from the start.
func TestPurgeFindsRowsInsertedBehindTheCursor(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithBatchSize(5))
	seedAccounts(t, s, SeedOptions{Contacts: 30, Lists: 1, PropertiesPerContact: 1}, "acc-1")
	ctx := context.Background()
	inserted := false
	s.afterBatch = func(table string, deleted int64) {
		if table != KindContacts || inserted {
			return
		}
		inserted = true
		// A contact with an id below the cursor, as a sequence cache of
		// another session would hand out.
		if _, err := s.pool.Exec(ctx, "INSERT INTO contacts (id, account_id, email) VALUES (-1, 'acc-1', 'late@example.test')"); err != nil {
			t.Errorf("insert a late contact: %v", err)
		}
	}
	before := footprint(t, s, "acc-1")
	res, err := purge(ctx, s, "acc-1")
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if left := footprint(t, s, "acc-1"); left.Items != 0 {
		t.Errorf("left %v after Purge", left.Detail)
	}
	if res.ItemsPurged != before.Items+1 {
		t.Errorf("ItemsPurged = %d, want %d", res.ItemsPurged, before.Items+1)
	}
}

func TestFootprint(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	res, err := s.Seed(context.Background(), "acc-7", SeedOptions{Contacts: 25, Lists: 3, PropertiesPerContact: 2, Seed: 7}, nil)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	seeded := map[string]int64{
		KindContactLists:       res.Lists,
		KindContacts:           res.Contacts,
		KindContactListMembers: res.Members,
		KindContactProperties:  res.Properties,
	}
	zero := map[string]int64{KindContactLists: 0, KindContacts: 0, KindContactListMembers: 0, KindContactProperties: 0}

	tests := []struct {
		name string
		give []string
		want []map[string]int64
	}{
		{name: "none", give: nil, want: nil},
		{name: "unknown", give: []string{"acc-404"}, want: []map[string]int64{zero}},
		{name: "input order and repeats", give: []string{"acc-404", "acc-7", "", "acc-7"}, want: []map[string]int64{zero, seeded, zero, seeded}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Footprint(context.Background(), tt.give)
			if err != nil {
				t.Fatalf("Footprint: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries, want %d", len(got), len(tt.want))
			}
			for i, fp := range got {
				var sum int64
				for _, n := range tt.want[i] {
					sum += n
				}
				if fp.AccountID != tt.give[i] || fp.Items != sum || !maps.Equal(fp.Detail, tt.want[i]) {
					t.Errorf("entry %d = %s %d %v, want %s %d %v", i, fp.AccountID, fp.Items, fp.Detail, tt.give[i], sum, tt.want[i])
				}
			}
		})
	}
}

func TestPurgeRefusesActionsOtherThanDelete(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, smallSeed(), "acc-keep")
	before := footprint(t, s, "acc-keep")
	_, err := s.Purge(context.Background(), worker.Task{AccountID: "acc-keep", Action: "pseudonymise"})
	var pe *worker.PermanentError
	if !errors.As(err, &pe) || pe.Code != "unsupported_action" {
		t.Fatalf("Purge(pseudonymise) = %v, want a permanent unsupported_action error", err)
	}
	if after := footprint(t, s, "acc-keep"); after.Items != before.Items {
		t.Errorf("an unsupported action deleted %d items", before.Items-after.Items)
	}
}
