package contactstore

import (
	"context"
	"fmt"
	"testing"
)

// benchSeed is the shape of every benchmark account: 1000 contacts, 5 lists,
// 3 properties each, about 6700 rows in all.
func benchSeed() SeedOptions { return SeedOptions{Contacts: 1000, Lists: 5, PropertiesPerContact: 3} }

// seedBenchAccounts seeds n accounts for the timed loop plus a few that stay,
// so that every purge runs against a table holding other accounts too. It
// returns the ids of the n accounts.
func seedBenchAccounts(b *testing.B, s *Store, n int) []string {
	b.Helper()
	ids := make([]string, n)
	for i := range n + 3 {
		id := fmt.Sprintf("acc-%06d", i)
		opts := benchSeed()
		opts.Seed = int64(i)
		if _, err := s.Seed(context.Background(), id, opts, nil); err != nil {
			b.Fatalf("Seed: %v", err)
		}
		if i < n {
			ids[i] = id
		}
	}
	if _, err := s.pool.Exec(context.Background(), "VACUUM ANALYZE"); err != nil {
		b.Fatalf("vacuum: %v", err)
	}
	return ids
}

// BenchmarkPurge measures Purge of one account of 1000 contacts.
//
//	go test -run '^$' -bench 'Purge|RawDelete' -benchtime 30x ./contactstore
func BenchmarkPurge(b *testing.B) {
	for _, batch := range []int{DefaultBatchSize, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := newStore(b, WithBatchSize(batch))
			ids := seedBenchAccounts(b, s, b.N)
			ctx := context.Background()
			var rows int64
			b.ResetTimer()
			for i := range b.N {
				res, err := purge(ctx, s, ids[i])
				if err != nil {
					b.Fatalf("Purge: %v", err)
				}
				rows += res.ItemsPurged
			}
			b.StopTimer()
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkRawDelete is the baseline Purge is compared with: the same
// account deleted with one unbatched DELETE ... WHERE account_id = $1 per
// table (children first, as the foreign keys require), all in one
// transaction as a naive purge would do it.
func BenchmarkRawDelete(b *testing.B) {
	s := newStore(b)
	ids := seedBenchAccounts(b, s, b.N)
	ctx := context.Background()
	var rows int64
	b.ResetTimer()
	for i := range b.N {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			b.Fatalf("begin: %v", err)
		}
		for _, table := range []string{"contact_properties", "contact_list_members", "contacts", "contact_lists"} {
			tag, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE account_id = $1", ids[i])
			if err != nil {
				b.Fatalf("delete %s: %v", table, err)
			}
			rows += tag.RowsAffected()
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatalf("commit: %v", err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkSeed measures Seed of one account of 1000 contacts.
func BenchmarkSeed(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	var contacts int64
	i := 0
	for b.Loop() {
		res, err := s.Seed(ctx, fmt.Sprintf("acc-%06d", i), benchSeed(), nil)
		if err != nil {
			b.Fatalf("Seed: %v", err)
		}
		contacts += res.Contacts
		i++
	}
	b.ReportMetric(float64(contacts)/b.Elapsed().Seconds(), "contacts/s")
}
