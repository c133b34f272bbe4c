package cli

import (
	"context"
	"errors"
	"flag"

	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// Limits of the logs seed, as logstore.SeedOptions has them.
const (
	maxSeedLogHours          = 100000
	maxSeedLogRecordsPerHour = 1000000
)

// logsSeeder seeds the event-log segments: hourly segments of sends,
// deliveries, opens, clicks and bounces, ending where the current hour
// begins.
type logsSeeder struct {
	hours          int
	recordsPerHour int
}

var _ seeder = (*logsSeeder)(nil)

func (s *logsSeeder) name() string { return "logs" }

func (s *logsSeeder) columns() []string { return []string{"records", "segments"} }

func (s *logsSeeder) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.hours, "log-hours", s.hours, "hours of event logs per account, one segment each, ending where the current hour begins")
	fs.IntVar(&s.recordsPerHour, "log-records-per-hour", s.recordsPerHour, "event-log records per account and hour")
}

func (s *logsSeeder) validate() error {
	// As for contacts: zero would silently mean the store's default.
	switch {
	case s.hours < 1 || s.hours > maxSeedLogHours:
		return errors.New("--log-hours must be between 1 and 100000")
	case s.recordsPerHour < 1 || s.recordsPerHour > maxSeedLogRecordsPerHour:
		return errors.New("--log-records-per-hour must be between 1 and 1000000")
	}
	return nil
}

func (s *logsSeeder) seed(ctx context.Context, p *program, accountIDs []string, seed int64, progress progressFunc) ([]seedCounts, error) {
	st, err := logstore.Open(ctx, p.cfg.logsRoot)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	opts := logstore.SeedOptions{Hours: s.hours, RecordsPerHour: s.recordsPerHour, Seed: seed}
	out := make([]seedCounts, 0, len(accountIDs))
	for _, id := range accountIDs {
		res, err := st.Seed(ctx, id, opts, func(done, total int64) {
			progress(id, "log records", done, total)
		})
		if err != nil {
			return nil, err
		}
		out = append(out, seedCounts{"records": res.Records, "segments": int64(res.Segments)})
	}
	return out, nil
}
