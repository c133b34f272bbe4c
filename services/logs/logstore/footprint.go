package logstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// The keys of worker.Footprint.Detail.
const (
	// DetailRecords counts the account's records (Items is the same).
	DetailRecords = "records"
	// DetailSegments counts the segment files holding any of them.
	DetailSegments = "segments"
)

// Footprint counts, for each of accountIDs, the records the segments still
// hold of it and the segment files they are in. It reads the segments the
// index names for any of the accounts and every open segment, each once
// and under the hour's shared lock, and counts the records it actually
// finds: the index only narrows the search, the count is the proof.
//
// It returns one entry per id in input order (repeated ids repeated), with
// both kinds in Detail; zeros for an account with nothing stored, and for
// an id that cannot be an account. It changes nothing. Errors wrap
// ErrCorruptSegment for a segment that cannot be decompressed, or the read
// error.
func (s *Store) Footprint(ctx context.Context, accountIDs []string) ([]worker.Footprint, error) {
	out := make([]worker.Footprint, len(accountIDs))
	for i, a := range accountIDs {
		out[i] = worker.Footprint{AccountID: a, Detail: map[string]int64{DetailRecords: 0, DetailSegments: 0}}
	}
	var valid []string
	for _, a := range accountIDs {
		if checkAccountID(a) == nil && !slices.Contains(valid, a) {
			valid = append(valid, a)
		}
	}
	if len(valid) == 0 {
		return out, nil
	}
	w, err := s.walk(ctx)
	if err != nil {
		return nil, fmt.Errorf("count records of %d accounts: %w", len(valid), err)
	}
	if err := s.refresh(ctx, w); err != nil {
		return nil, fmt.Errorf("count records of %d accounts: load index: %w", len(valid), err)
	}
	plan := make(map[hourID][]string)
	for _, a := range valid {
		for _, h := range s.index.hoursOf(a) {
			plan[h] = append(plan[h], a)
		}
	}
	for h, f := range w {
		if f.open {
			plan[h] = valid
		}
	}
	hours := make([]hourID, 0, len(plan))
	for h := range plan {
		hours = append(hours, h)
	}
	slices.Sort(hours)

	type counts struct {
		// records and segments per account of the hour's plan
		records, segments map[string]int64
		err               error
		done              bool
	}
	results := make([]counts, len(hours))
	s.forEach(ctx, len(hours), func(ctx context.Context, i int) {
		rec, segs, err := s.countHour(ctx, hours[i], plan[hours[i]])
		results[i] = counts{rec, segs, err, true}
	})
	total := make(map[string]int64, len(valid))
	segments := make(map[string]int64, len(valid))
	for i, r := range results {
		if !r.done {
			return nil, fmt.Errorf("count records of %d accounts: %w", len(valid), ctx.Err())
		}
		if r.err != nil {
			return nil, fmt.Errorf("count records of %d accounts: segment %s: %w", len(valid), hours[i], r.err)
		}
		for a, n := range r.records {
			total[a] += n
		}
		for a, n := range r.segments {
			segments[a] += n
		}
	}
	for i := range out {
		a := out[i].AccountID
		out[i].Items = total[a]
		out[i].Detail[DetailRecords] = total[a]
		out[i].Detail[DetailSegments] = segments[a]
	}
	return out, nil
}

// countHour counts the records of accounts in the hour's segment files,
// under the hour's shared lock, so that no half-appended line is read.
// Both files are counted when a crashed seal left the open one beside the
// sealed one: both are on disk until recovery removes the open one.
func (s *Store) countHour(ctx context.Context, h hourID, accounts []string) (records, segments map[string]int64, err error) {
	p := s.paths(h)
	l, err := s.lockHour(ctx, p, false)
	if err != nil {
		return nil, nil, err
	}
	defer l.unlock()
	records = make(map[string]int64)
	segments = make(map[string]int64)
	for _, file := range []struct {
		path string
		gz   bool
	}{{p.sealed, true}, {p.open, false}} {
		f, err := os.Open(file.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		count := dropSet(accounts)
		lf := lineFilter{count: count}
		if file.gz {
			err = lf.runGzip(ctx, f)
		} else {
			err = lf.run(ctx, f)
		}
		_ = f.Close()
		if err != nil {
			return nil, nil, err
		}
		for a, c := range count {
			if c.n > 0 {
				records[a] += c.n
				segments[a]++
			}
		}
	}
	return records, segments, nil
}
