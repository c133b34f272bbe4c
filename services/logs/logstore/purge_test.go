package logstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
)

func TestPurgeErasesOneAccountOnly(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seeded := seedAccounts(t, s, smallSeed(), "acc-000001", "acc-000002", "acc-000003")
	before := decodedRecords(t, s.root)
	fp := footprint(t, s, "acc-000002")
	if fp.Items != seeded["acc-000002"].Records || fp.Detail[DetailSegments] != 3 {
		t.Fatalf("footprint before = %d records in %d segments, want %d in 3", fp.Items, fp.Detail[DetailSegments], seeded["acc-000002"].Records)
	}

	res, err := purge(context.Background(), s, "acc-000002")
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if res.ItemsPurged != fp.Items {
		t.Errorf("ItemsPurged = %d, want the footprint before, %d", res.ItemsPurged, fp.Items)
	}
	after := decodedRecords(t, s.root)
	if n := len(after["acc-000002"]); n != 0 {
		t.Errorf("%d records of the purged account left", n)
	}
	for _, id := range []string{"acc-000001", "acc-000003"} {
		if !reflect.DeepEqual(after[id], before[id]) {
			t.Errorf("records of %s changed", id)
		}
	}
	want := map[string]int64{DetailRecords: 0, DetailSegments: 0}
	if fp := footprint(t, s, "acc-000002"); fp.Items != 0 || !maps.Equal(fp.Detail, want) {
		t.Errorf("footprint after = %d %v, want all zero", fp.Items, fp.Detail)
	}
	checkIndexInvariant(t, s)

	again, err := purge(context.Background(), s, "acc-000002")
	if err != nil || again.ItemsPurged != 0 {
		t.Errorf("second Purge = %d, %v; want 0, nil", again.ItemsPurged, err)
	}
}

func TestPurgeUnknownAccount(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, smallSeed(), "acc-1")
	res, err := purge(context.Background(), s, "acc-404")
	if err != nil || res.ItemsPurged != 0 {
		t.Errorf("Purge of an unknown account = %d, %v; want 0, nil", res.ItemsPurged, err)
	}
	if st := s.Stats(); st.SegmentsRead != 0 {
		t.Errorf("read %d segments for an account the index does not know, want 0", st.SegmentsRead)
	}
}

func TestPurgeRejectsBadTasks(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, smallSeed(), "acc-keep")
	tests := []struct {
		name     string
		give     worker.Task
		wantCode string
		wantIs   error
	}{
		{name: "empty account", give: worker.Task{AccountID: "", Action: "delete"}, wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "e-mail address", give: worker.Task{AccountID: "jane.doe@nordpost.example", Action: "delete"}, wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "white space", give: worker.Task{AccountID: "acc 1", Action: "delete"}, wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "too long", give: worker.Task{AccountID: strings.Repeat("a", maxAccountIDLen+1), Action: "delete"}, wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "pseudonymise", give: worker.Task{AccountID: "acc-keep", Action: "pseudonymise"}, wantCode: "unsupported_action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.Purge(context.Background(), tt.give)
			var pe *worker.PermanentError
			if !errors.As(err, &pe) || pe.Code != tt.wantCode {
				t.Fatalf("Purge = %v, want a permanent %s error", err, tt.wantCode)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Purge = %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.give.AccountID != "" && tt.wantCode == "bad_task" && strings.Contains(err.Error(), tt.give.AccountID) {
				t.Errorf("error %q repeats the rejected id", err)
			}
		})
	}
	if fp := footprint(t, s, "acc-keep"); fp.Items != 3*40 {
		t.Errorf("a refused task changed data: %d records left, want 120", fp.Items)
	}
}

// N accounts purged at once share one pass: every segment that holds any
// of them is rewritten once, and each call gets its own count.
func TestPurgeCoalescesConcurrentErasures(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithLinger(200*time.Millisecond))
	var ids []string
	for i := range 12 {
		ids = append(ids, fmt.Sprintf("acc-%06d", i))
	}
	keep := []string{"keep-1", "keep-2"}
	seeded := seedAccounts(t, s, smallSeed(), append(ids[:len(ids):len(ids)], keep...)...)
	before := decodedRecords(t, s.root)

	var wg sync.WaitGroup
	results := make([]worker.Result, len(ids))
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Go(func() { results[i], errs[i] = purge(context.Background(), s, id) })
	}
	wg.Wait()
	for i, id := range ids {
		if errs[i] != nil {
			t.Errorf("Purge %s: %v", id, errs[i])
		}
		if results[i].ItemsPurged != seeded[id].Records {
			t.Errorf("Purge %s removed %d records, want %d", id, results[i].ItemsPurged, seeded[id].Records)
		}
	}
	st := s.Stats()
	if st.Passes != 1 || st.SegmentRewrites != 3 || st.SegmentsRead != 3 {
		t.Errorf("stats = %+v, want 1 pass rewriting each of the 3 segments once", st)
	}
	after := decodedRecords(t, s.root)
	for _, id := range ids {
		if len(after[id]) != 0 {
			t.Errorf("%d records of %s left", len(after[id]), id)
		}
	}
	for _, id := range keep {
		if !reflect.DeepEqual(after[id], before[id]) {
			t.Errorf("records of %s changed", id)
		}
	}
	checkIndexInvariant(t, s)
}

// The index keeps a purge from reading segments that do not hold the
// account.
func TestPurgeReadsOnlyTheAccountsSegments(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, SeedOptions{Hours: 6, RecordsPerHour: 10, Start: testStart}, "acc-wide")
	seedAccounts(t, s, SeedOptions{Hours: 2, RecordsPerHour: 10, Start: testStart.Add(2 * time.Hour)}, "acc-narrow")
	if _, err := purge(context.Background(), s, "acc-narrow"); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if st := s.Stats(); st.SegmentsRead != 2 || st.SegmentRewrites != 2 {
		t.Errorf("read %d and rewrote %d segments, want 2 and 2 of 6", st.SegmentsRead, st.SegmentRewrites)
	}
}

// The hour a writer has open is erased under the writer's lock, so that
// the purge is complete when it reports, not an hour later.
func TestPurgeErasesOpenSegments(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, smallSeed(), "acc-1", "acc-2")
	openHour := testStart.Add(5 * time.Hour)
	recs := []Record{
		{Time: openHour.Add(time.Minute), AccountID: "acc-1", Event: EventSent, MessageID: "<m1@x.example>", Recipient: "a@b.example", Subject: "Hallo"},
		{Time: openHour.Add(2 * time.Minute), AccountID: "acc-2", Event: EventSent, MessageID: "<m2@x.example>", Recipient: "c@d.example", Subject: "Hallo"},
		{Time: openHour.Add(3 * time.Minute), AccountID: "acc-1", Event: EventDelivered, MessageID: "<m1@x.example>", Recipient: "a@b.example", Subject: "Hallo"},
	}
	if err := s.Append(context.Background(), openHour, recs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	fp := footprint(t, s, "acc-1")
	if fp.Items != 3*40+2 || fp.Detail[DetailSegments] != 4 {
		t.Fatalf("footprint = %d in %d segments, want 122 in 4", fp.Items, fp.Detail[DetailSegments])
	}
	res, err := purge(context.Background(), s, "acc-1")
	if err != nil || res.ItemsPurged != 122 {
		t.Fatalf("Purge = %d, %v; want 122, nil", res.ItemsPurged, err)
	}
	if fp := footprint(t, s, "acc-1"); fp.Items != 0 {
		t.Errorf("%d records left", fp.Items)
	}
	// The writer goes on appending to the replaced open segment.
	if err := s.Append(context.Background(), openHour, recs[1:2]); err != nil {
		t.Fatalf("Append after purge: %v", err)
	}
	if err := s.Seal(context.Background(), openHour); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if fp := footprint(t, s, "acc-2"); fp.Items != 3*40+2 {
		t.Errorf("acc-2 has %d records, want 122", fp.Items)
	}
	checkIndexInvariant(t, s)
}

// Malformed lines are kept byte for byte and counted; the records around
// them are erased as usual.
func TestPurgeKeepsMalformedLines(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	hour := testStart
	p := s.paths(hourOf(hour))
	if err := s.ensureDir(p); err != nil {
		t.Fatal(err)
	}
	malformed := []string{
		`not json at all`,
		`{"account_id":"acc-1","truncated`,
		`{"account_id":"acc-1","account_id":"acc-2","event":"sent"}`,
		`{"account_id":42}`,
		`{"event":"sent"}`,
		`["acc-1"]`,
		``,
	}
	good := `{"ts":"2026-11-29T10:00:00Z","account_id":"acc-1","event":"sent","message_id":"<m@x.example>","recipient":"a@b.example","subject":"s"}`
	other := `{"ts":"2026-11-29T10:00:01Z","account_id":"acc-2","event":"sent","message_id":"<n@x.example>","recipient":"c@d.example","subject":"s"}`
	content := strings.Join(append(append([]string{good}, malformed...), other, good), "\n") + "\n"
	if err := os.WriteFile(p.open, []byte(content), filePerm); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(context.Background(), hour); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	res, err := purge(context.Background(), s, "acc-1")
	if err != nil || res.ItemsPurged != 2 {
		t.Fatalf("Purge = %d, %v; want 2, nil", res.ItemsPurged, err)
	}
	var got []string
	for _, l := range fileLines(t, p.sealed) {
		got = append(got, string(l))
	}
	want := append(append([]string(nil), malformed...), other)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("segment after purge =\n%q\nwant\n%q", got, want)
	}
	if st := s.Stats(); st.MalformedLines < int64(len(malformed)) {
		t.Errorf("MalformedLines = %d, want at least %d", st.MalformedLines, len(malformed))
	}
}

func TestPurgeCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithLinger(time.Minute))
	seedAccounts(t, s, smallSeed(), "acc-1")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := purge(ctx, s, "acc-1")
	if !errors.Is(err, context.DeadlineExceeded) || worker.IsPermanent(err) {
		t.Fatalf("Purge = %v, want a transient error wrapping context.DeadlineExceeded", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Passes != 0 {
		t.Errorf("a pass ran for a caller that gave up: %+v", st)
	}
	if _, err := purge(context.Background(), s, "acc-1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Purge after Close = %v, want ErrClosed", err)
	}
}

// A segment that cannot be decompressed fails the accounts it holds for
// good, and only them.
func TestPurgeCorruptSegmentIsPermanent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	seedAccounts(t, s, smallSeed(), "acc-1")
	seedAccounts(t, s, SeedOptions{Hours: 1, RecordsPerHour: 10, Start: testStart.Add(-time.Hour)}, "acc-2")
	p := s.paths(hourOf(testStart.Add(time.Hour)))
	b, err := os.ReadFile(p.sealed)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p.sealed, b, filePerm); err != nil {
		t.Fatal(err)
	}
	var (
		wg         sync.WaitGroup
		err1, err2 error
		res2       worker.Result
	)
	wg.Go(func() { _, err1 = purge(context.Background(), s, "acc-1") })
	wg.Go(func() { res2, err2 = purge(context.Background(), s, "acc-2") })
	wg.Wait()
	var pe *worker.PermanentError
	if !errors.As(err1, &pe) || pe.Code != "corrupt_segment" || !errors.Is(err1, ErrCorruptSegment) {
		t.Errorf("Purge acc-1 = %v, want a permanent corrupt_segment error", err1)
	}
	if !strings.Contains(fmt.Sprint(err1), "2026/11/29/11") {
		t.Errorf("error %q does not name the segment", err1)
	}
	if err2 != nil || res2.ItemsPurged != 10 {
		t.Errorf("Purge acc-2 = %d, %v; want 10, nil", res2.ItemsPurged, err2)
	}
}

// A caller that gives up mid-pass gets its error at once; the pass goes on
// for the others (and erases the quitter's records too, which its retry
// then finds gone). When every caller has given up, the pass stops before
// the next segment.
func TestPurgeCallerGivesUpMidPass(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithLinger(100*time.Millisecond), WithParallelism(1))
	seeded := seedAccounts(t, s, smallSeed(), "acc-quit", "acc-stay", "acc-alone")
	// blockFirstHour holds the pass before it renames the first hour's
	// replacement, until release is closed.
	blockFirstHour := func(release <-chan struct{}) <-chan struct{} {
		reached := make(chan struct{}, 1)
		s.hook = func(pt crashPoint, h hourID) error {
			if pt == pointBeforeRename && h == hourOf(testStart) {
				reached <- struct{}{}
				<-release
			}
			return nil
		}
		return reached
	}
	type outcome struct {
		res worker.Result
		err error
	}
	start := func(ctx context.Context, id string) <-chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			res, err := purge(ctx, s, id)
			ch <- outcome{res, err}
		}()
		return ch
	}

	release := make(chan struct{})
	reached := blockFirstHour(release)
	quitCtx, quit := context.WithCancel(context.Background())
	defer quit()
	quitter, stayer := start(quitCtx, "acc-quit"), start(context.Background(), "acc-stay")
	<-reached
	quit()
	select {
	case o := <-quitter:
		if !errors.Is(o.err, context.Canceled) {
			t.Errorf("Purge of the quitter = %v, want context.Canceled", o.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the quitter had to wait for the pass")
	}
	close(release)
	if o := <-stayer; o.err != nil || o.res.ItemsPurged != seeded["acc-stay"].Records {
		t.Errorf("Purge of the other = %d, %v; want %d, nil", o.res.ItemsPurged, o.err, seeded["acc-stay"].Records)
	}
	if res, err := purge(context.Background(), s, "acc-quit"); err != nil || res.ItemsPurged != 0 {
		t.Errorf("retry of the quitter = %d, %v; want 0, nil", res.ItemsPurged, err)
	}

	passes := s.Stats().Passes
	release = make(chan struct{})
	reached = blockFirstHour(release)
	aloneCtx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	alone := start(aloneCtx, "acc-alone")
	<-reached
	giveUp()
	if o := <-alone; !errors.Is(o.err, context.Canceled) {
		t.Errorf("Purge = %v, want context.Canceled", o.err)
	}
	close(release)
	for s.Stats().Passes == passes {
		time.Sleep(5 * time.Millisecond)
	}
	// The first hour's replacement was complete and went in; the pass
	// started no other hour.
	if fp := footprint(t, s, "acc-alone"); fp.Items != 80 || fp.Detail[DetailSegments] != 2 {
		t.Errorf("footprint = %v, want 80 records in the 2 hours the abandoned pass did not reach", fp.Detail)
	}
}
