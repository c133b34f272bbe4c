package harness

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// Latency summarises one latency over the jobs of a run, in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// latencyOf sorts ds and returns its nearest-rank percentiles.
func latencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(float64(len(ds))*p+0.999999) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latency{N: len(ds), P50: ms(rank(0.50)), P99: ms(rank(0.99)), Max: ms(ds[len(ds)-1])}
}

// PipelineRun is one batch of erasures through the whole pipeline.
type PipelineRun struct {
	Jobs      int `json:"jobs"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// Rate is the requested jobs per second; 0: as fast as the pipeline
	// takes them, with at most Window jobs in flight.
	Rate   float64 `json:"rate"`
	Window int     `json:"window,omitempty"`
	// Seconds is from the first request to the last job finished.
	Seconds    float64 `json:"seconds"`
	JobsPerSec float64 `json:"jobs_per_sec"`
	// Dispatched is request → every task of the job dispatched; Finished
	// is request → job completed.
	Dispatched Latency `json:"request_to_all_dispatched"`
	Finished   Latency `json:"request_to_completed"`
}

// firer publishes the dashboard's AccountDeleted events.
type firer struct {
	js  jetstream.JetStream
	tr  *tracker
	run string
	out io.Writer
	// alive returns an error when a service died; checked every second.
	alive func() error
}

// fire requests the erasure of every account through the dashboard's
// event, at rate jobs per second, or (rate 0) as fast as the pipeline
// takes them with at most window jobs in flight, and waits until every job
// finished or timeout passed.
func (f *firer) fire(ctx context.Context, label string, accounts []string, rate float64, window int, timeout time.Duration) (PipelineRun, error) {
	res := PipelineRun{Jobs: len(accounts), Rate: rate}
	if rate == 0 {
		res.Window = window
	}
	baseFinished, baseFailed := f.tr.counts()
	slots := make(chan struct{}, max(window, 1))
	if rate == 0 {
		f.tr.setOnFinish(func() {
			select {
			case <-slots:
			default:
			}
		})
		defer f.tr.setOnFinish(nil)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	futures := make([]jetstream.PubAckFuture, 0, len(accounts))
	fired := make(chan int, 1)
	fireErr := make(chan error, 1)
	start := time.Now()
	go func() {
		for i, acct := range accounts {
			if rate > 0 {
				next := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						fireErr <- ctx.Err()
						return
					}
				}
			} else {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					fireErr <- ctx.Err()
					return
				}
			}
			msg, err := eventMsg(f.run, acct)
			if err != nil {
				fireErr <- err
				return
			}
			f.tr.expect(acct, time.Now())
			// Waiting for acks is the back-pressure: with sync_interval
			// always each ack waits for an fsync, so the default stall
			// wait (200 ms) is too short.
			fut, err := f.js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute))
			if err != nil {
				fireErr <- fmt.Errorf("publish the account-deletion event: %w", err)
				return
			}
			futures = append(futures, fut)
			select {
			case fired <- i + 1:
			default:
			}
		}
		fireErr <- nil
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		nFired   int
		firing   = true
		lastDone int
	)
	for {
		done, failed := f.tr.counts()
		done, failed = done-baseFinished, failed-baseFailed
		if !firing && done >= len(accounts) {
			res.Completed, res.Failed = done-failed, failed
			break
		}
		select {
		case n := <-fired:
			nFired = n
			continue
		case err := <-fireErr:
			if err != nil {
				return res, fmt.Errorf("%s: %w", label, err)
			}
			firing = false
			nFired = len(accounts)
			continue
		case <-f.tr.changed:
			continue
		case <-ctx.Done():
			return res, fmt.Errorf("%s: %d of %d jobs finished within %s; raise -timeout, or read the services' logs in the work directory", label, done, len(accounts), timeout)
		case <-tick.C:
			if err := f.alive(); err != nil {
				return res, fmt.Errorf("%s: %w", label, err)
			}
			if f.out != nil {
				fmt.Fprintf(f.out, "lethe-bench: %s: %d/%d requested, %d finished (%d failed), %d jobs/s in the last second\n",
					label, nFired, len(accounts), done, failed, done-lastDone)
			}
			lastDone = done
		}
	}
	for _, fut := range futures {
		select {
		case err := <-fut.Err():
			return res, fmt.Errorf("%s: publish the account-deletion event: %w", label, err)
		default:
		}
	}

	var dispatched, finished []time.Duration
	var last time.Time
	for _, tm := range f.tr.timings(accounts) {
		if tm.finishedAt.After(last) {
			last = tm.finishedAt
		}
		finished = append(finished, tm.finished)
		if tm.allDispatched {
			dispatched = append(dispatched, tm.dispatched)
		}
	}
	res.Seconds = last.Sub(start).Seconds()
	if res.Seconds > 0 {
		res.JobsPerSec = float64(len(accounts)) / res.Seconds
	}
	res.Dispatched = latencyOf(dispatched)
	res.Finished = latencyOf(finished)
	return res, nil
}

// eventMsg is the AccountDeleted event the dashboard publishes, with its
// message id as erasectl event sets it.
func eventMsg(run, account string) (*nats.Msg, error) {
	eventID := run + "-" + account
	data, err := proto.Marshal(&accountsv1.AccountDeleted{
		EventId: eventID, AccountId: account, DeletedAt: timestamppb.Now(),
		RequestedBy: "bench", Reason: "benchmark",
	})
	if err != nil {
		return nil, fmt.Errorf("encode the account-deletion event: %w", err)
	}
	m := nats.NewMsg(erasurev1.AccountDeletedSubject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "account-deleted:"+eventID)
	return m, nil
}

// accountIDs makes n account ids unique to the run and phase.
func accountIDs(run, phase string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%s-%07d", run, phase, i)
	}
	return out
}
