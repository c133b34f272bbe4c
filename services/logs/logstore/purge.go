package logstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// ActionDelete is the one action the logs store runs.
const ActionDelete = "delete"

// purgeRequest is one Purge call waiting for a pass.
type purgeRequest struct {
	ctx     context.Context
	account string
	reply   chan purgeReply // buffered: the loop never waits for a caller
}

type purgeReply struct {
	removed int64
	err     error
}

// Purge removes every record of task.AccountID from every segment, sealed
// and open, and returns how many it removed; zero when nothing was left,
// which is how a repeated purge succeeds.
//
// Purge does not erase on its own: it hands the account to the store's
// erasure loop and waits. The loop takes every account waiting (after a
// short linger, see WithLinger), finds their segments in the index,
// rewrites each affected segment once without the records of all of them,
// and answers each call with its own account's count. So N purges that
// run at once cost about one rewrite of each affected segment, not N. Two
// calls for the same account in one pass: the first gets the count, the
// other zero, as if they had run one after the other.
//
// When ctx ends while the call waits, Purge returns an error wrapping
// ctx.Err(); the pass goes on for the other accounts, and may still erase
// this one (the retry then finds less or nothing). A pass stops early when
// every caller in it has given up, or at Close (ErrClosed).
//
// On error the Result counts the records whose removal is already
// visible, so that the runtime's sum over attempts is right. Errors wrap
// the cause; a segment that cannot be decompressed is a
// worker.PermanentError with the code "corrupt_segment" wrapping
// ErrCorruptSegment. An account id that cannot be one is a permanent
// "bad_task" error wrapping ErrInvalidAccountID; an action other than
// "delete" is a permanent "unsupported_action" error.
func (s *Store) Purge(ctx context.Context, task worker.Task) (worker.Result, error) {
	if err := checkAccountID(task.AccountID); err != nil {
		return worker.Result{}, worker.Permanentf("bad_task", "erase event logs: %w", err)
	}
	// Event logs are only ever deleted; a policy asking for anything else
	// is a mistake that must fail loudly, not be treated as a delete.
	if task.Action != ActionDelete && task.Action != "" {
		return worker.Result{}, worker.Permanentf("unsupported_action", "erase event logs: action %q is not supported (only %q)", task.Action, ActionDelete)
	}
	req := &purgeRequest{ctx: ctx, account: task.AccountID, reply: make(chan purgeReply, 1)}
	select {
	case s.requests <- req:
	case <-ctx.Done():
		return worker.Result{}, fmt.Errorf("erase event logs of account %s: %w", task.AccountID, ctx.Err())
	case <-s.closing:
		return worker.Result{}, fmt.Errorf("erase event logs of account %s: %w", task.AccountID, ErrClosed)
	}
	select {
	case r := <-req.reply:
		if r.err != nil {
			return worker.Result{ItemsPurged: r.removed}, wrapPurgeError(task.AccountID, r.err)
		}
		return worker.Result{ItemsPurged: r.removed}, nil
	case <-ctx.Done():
		return worker.Result{}, fmt.Errorf("erase event logs of account %s: gave up waiting: %w", task.AccountID, ctx.Err())
	case <-s.loopDone:
		// The loop answers every request it took before it exits; one it
		// never took is answered here.
		select {
		case r := <-req.reply:
			if r.err != nil {
				return worker.Result{ItemsPurged: r.removed}, wrapPurgeError(task.AccountID, r.err)
			}
			return worker.Result{ItemsPurged: r.removed}, nil
		default:
			return worker.Result{}, fmt.Errorf("erase event logs of account %s: %w", task.AccountID, ErrClosed)
		}
	}
}

func wrapPurgeError(account string, err error) error {
	err = fmt.Errorf("erase event logs of account %s: %w", account, err)
	if errors.Is(err, ErrCorruptSegment) {
		return &worker.PermanentError{Code: "corrupt_segment", Err: err}
	}
	return err
}

// loop runs erasure passes until Close: it waits for a first request,
// lingers for more, takes everything queued, and runs one pass.
func (s *Store) loop() {
	defer close(s.loopDone)
	for {
		var batch []*purgeRequest
		select {
		case r := <-s.requests:
			batch = append(batch, r)
		case <-s.closing:
			s.failQueued(nil)
			return
		}
		if s.linger > 0 {
			t := time.NewTimer(s.linger)
		linger:
			for {
				select {
				case r := <-s.requests:
					batch = append(batch, r)
				case <-t.C:
					break linger
				case <-s.closing:
					t.Stop()
					s.failQueued(batch)
					return
				}
			}
		}
	drain:
		for {
			select {
			case r := <-s.requests:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.pass(batch)
	}
}

// failQueued answers batch and every queued request with ErrClosed.
func (s *Store) failQueued(batch []*purgeRequest) {
	for _, r := range batch {
		r.reply <- purgeReply{err: ErrClosed}
	}
	for {
		select {
		case r := <-s.requests:
			r.reply <- purgeReply{err: ErrClosed}
		default:
			return
		}
	}
}

// pass erases the accounts of batch together and answers every request.
func (s *Store) pass(batch []*purgeRequest) {
	start := time.Now()
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.reply <- purgeReply{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	var accounts []string
	seen := make(map[string]bool, len(live))
	for _, r := range live {
		if !seen[r.account] {
			seen[r.account] = true
			accounts = append(accounts, r.account)
		}
	}

	// The pass serves every caller in it: it ends early only when all of
	// them gave up, or the store closes.
	ctx, cancel := context.WithCancel(s.base)
	defer cancel()
	var waiting atomic.Int64
	waiting.Store(int64(len(live)))
	for _, r := range live {
		stop := context.AfterFunc(r.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}

	res := s.erase(passContext{Context: ctx, live: live}, accounts)

	replied := make(map[string]bool, len(accounts))
	for _, r := range live {
		var rep purgeReply
		if !replied[r.account] {
			replied[r.account] = true
			rep.removed = res.removed[r.account]
		}
		rep.err = res.errs[r.account]
		if rep.err == nil {
			rep.err = res.err
		}
		if rep.err != nil && s.base.Err() != nil {
			rep.err = fmt.Errorf("%w: %w", ErrClosed, rep.err)
		}
		r.reply <- rep
	}
	s.stats.passes.Add(1)
	s.stats.accounts.Add(int64(len(accounts)))
	s.metrics.passAccounts.Observe(float64(len(accounts)))
	s.metrics.passDuration.Observe(time.Since(start).Seconds())
	s.log.Info("erasure pass done",
		zap.Strings("account_ids", accounts),
		zap.Int("segments_read", res.read),
		zap.Int("segments_rewritten", res.rewritten),
		zap.Int64("records_removed", res.total),
		zap.Int64("malformed_lines_kept", res.malformed),
		zap.Int("failed_accounts", len(res.errs)),
		zap.Bool("failed", res.err != nil),
		zap.Duration("took", time.Since(start)))
}

// passResult is what one erasure pass did.
type passResult struct {
	removed map[string]int64
	// errs holds the first error of each account that failed; err fails
	// every account (the index could not be loaded).
	errs map[string]error
	err  error

	read, rewritten  int
	total, malformed int64
}

// erase removes the records of accounts from every segment that holds
// them: the sealed segments the index names for any of them, and every
// open segment (open segments are not indexed; there are one or two).
// Each segment is rewritten once, without the records of all accounts.
// A segment that fails fails only the accounts it holds (by the index;
// all of them for an open segment); the others still succeed.
func (s *Store) erase(ctx context.Context, accounts []string) passResult {
	res := passResult{removed: make(map[string]int64), errs: make(map[string]error)}
	w, err := s.walk(ctx)
	if err != nil {
		res.err = err
		return res
	}
	if err := s.refresh(ctx, w); err != nil {
		res.err = fmt.Errorf("load index: %w", err)
		return res
	}
	plan := make(map[hourID][]string)
	for _, a := range accounts {
		for _, h := range s.index.hoursOf(a) {
			plan[h] = append(plan[h], a)
		}
	}
	for h, f := range w {
		if f.open {
			plan[h] = accounts
		}
	}
	hours := make([]hourID, 0, len(plan))
	for h := range plan {
		hours = append(hours, h)
	}
	slices.Sort(hours)

	type outcome struct {
		hourResult
		err  error
		done bool
	}
	outcomes := make([]outcome, len(hours))
	s.forEach(ctx, len(hours), func(ctx context.Context, i int) {
		h := hours[i]
		var temps []string
		if f := w[h]; f != nil {
			temps = f.temps
		}
		// Every account of the pass is dropped wherever it is found; the
		// plan only says where to look.
		r, err := s.eraseHour(ctx, h, accounts, temps)
		outcomes[i] = outcome{r, err, true}
	})
	for i, o := range outcomes {
		for a, n := range o.removed {
			res.removed[a] += n
			res.total += n
		}
		res.read += o.read
		res.rewritten += o.rewritten
		res.malformed += o.malformed
		err := o.err
		if !o.done {
			// forEach never started the hour: the pass was cancelled.
			err = ctx.Err()
		}
		if err != nil {
			for _, a := range plan[hours[i]] {
				if res.errs[a] == nil {
					res.errs[a] = fmt.Errorf("segment %s: %w", hours[i], err)
				}
			}
		}
	}
	s.stats.segmentsRead.Add(int64(res.read))
	s.stats.segmentRewrites.Add(int64(res.rewritten))
	s.stats.recordsRemoved.Add(res.total)
	return res
}

// passContext ends as the pass's context does, and its Err also reports
// the pass abandoned as soon as every caller's context has ended: the
// AfterFunc that cancels the pass runs on its own goroutine, and a caller
// that gave up must not see the pass start another hour in between.
type passContext struct {
	context.Context
	live []*purgeRequest
}

func (p passContext) Err() error {
	if err := p.Context.Err(); err != nil {
		return err
	}
	for _, r := range p.live {
		if r.ctx.Err() == nil {
			return nil
		}
	}
	return context.Canceled
}

// forEach runs fn for 0..n-1 on up to s.parallelism goroutines, in order
// of i as far as they allow, and stops starting new ones when ctx ends.
func (s *Store) forEach(ctx context.Context, n int, fn func(ctx context.Context, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.parallelism, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				fn(ctx, i)
			}
		})
	}
	wg.Wait()
}
