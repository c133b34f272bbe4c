package harness

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// trace is what the lifecycle stream told about one account's job.
type trace struct {
	requested time.Time
	// tasks is the job's task count (from JOB_CREATED); dispatched holds
	// each task's TASK_DISPATCHED time, or its outcome's time when the
	// outcome's event is all there is of it (an upper bound of the
	// dispatch).
	tasks      int
	dispatched map[string]time.Time
	finished   time.Time
	failed     bool
	done       bool
}

// tracker follows the lifecycle events, the audit trail every job writes,
// and times each job of the accounts it was told about: request → every
// task dispatched (the latest TASK_DISPATCHED) and request → finished
// (the first of JOB_ERASED, JOB_COMPLETED and JOB_FAILED). The events' own times are the
// coordinator's clock, the same host's as the harness's.
type tracker struct {
	mu        sync.Mutex
	accounts  map[string]*trace
	finished  int
	failed    int
	undecoded int
	// onFinish, when set, is called (outside the lock) once per finished
	// job of a known account.
	onFinish func()
	// changed gets a token (never blocking) whenever a job finished, so
	// that a waiting run looks at the counts at once.
	changed chan struct{}
	sub     *nats.Subscription
}

// startTracker subscribes to the lifecycle events as they are published.
// A plain subscription, not a JetStream consumer: it costs the server one
// more copy of each event and no consumer state, so that measuring
// disturbs the measured as little as possible. Its pending limits are
// lifted; a dropped event would leave a job unfinished in the run, and
// lost reports that as an error.
func startTracker(nc *nats.Conn) (*tracker, error) {
	t := &tracker{accounts: make(map[string]*trace), changed: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(erasurev1.LifecycleSubjectPrefix+">", func(m *nats.Msg) { t.handle(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to the lifecycle events: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("subscribe to the lifecycle events: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("subscribe to the lifecycle events: %w", err)
	}
	t.sub = sub
	return t, nil
}

func (t *tracker) stop() { _ = t.sub.Unsubscribe() }

// lost returns an error when the subscription dropped events.
func (t *tracker) lost() error {
	if n, err := t.sub.Dropped(); err == nil && n > 0 {
		return fmt.Errorf("the harness dropped %d lifecycle events (it could not keep up); rerun with a lower -window or -rate", n)
	}
	return nil
}

// expect registers an account whose job is about to be requested.
func (t *tracker) expect(account string, at time.Time) {
	t.mu.Lock()
	t.accounts[account] = &trace{requested: at, dispatched: make(map[string]time.Time, 4)}
	t.mu.Unlock()
}

// setOnFinish sets the finish callback; nil removes it.
func (t *tracker) setOnFinish(f func()) {
	t.mu.Lock()
	t.onFinish = f
	t.mu.Unlock()
}

func (t *tracker) handle(data []byte) {
	var ev erasurev1.LifecycleEvent
	if err := proto.Unmarshal(data, &ev); err != nil {
		t.mu.Lock()
		t.undecoded++
		t.mu.Unlock()
		return
	}
	t.mu.Lock()
	tr := t.accounts[ev.GetAccountId()]
	if tr == nil || tr.done {
		t.mu.Unlock()
		return
	}
	at := ev.GetAt().AsTime()
	var notify func()
	switch ev.GetType() {
	case erasurev1.EventType_EVENT_TYPE_JOB_CREATED:
		tr.tasks = len(ev.GetTasks())
	case erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED:
		tr.dispatched[ev.GetCategory()+"/"+ev.GetStage()] = at
	case erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED, erasurev1.EventType_EVENT_TYPE_TASK_FAILED:
		k := ev.GetCategory() + "/" + ev.GetStage()
		if _, ok := tr.dispatched[k]; !ok {
			tr.dispatched[k] = at
		}
	case erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED, erasurev1.EventType_EVENT_TYPE_JOB_FAILED,
		// Erased: every stage due now is done, only delayed retention
		// stages are left (none with the bench policy, but a policy
		// with them ends the run's part of the job here).
		erasurev1.EventType_EVENT_TYPE_JOB_ERASED:
		tr.done = true
		tr.finished = at
		tr.failed = ev.GetType() == erasurev1.EventType_EVENT_TYPE_JOB_FAILED
		t.finished++
		if tr.failed {
			t.failed++
		}
		notify = t.onFinish
	}
	t.mu.Unlock()
	if notify != nil {
		notify()
	}
	if tr.done {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

// counts returns how many jobs finished (and of them failed) so far.
func (t *tracker) counts() (finished, failed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished, t.failed
}

// timing is one finished job's latencies.
type timing struct {
	// allDispatched is false when not every task's dispatch was seen.
	allDispatched bool
	dispatched    time.Duration
	finished      time.Duration
	finishedAt    time.Time
}

// timings returns the latencies of the finished jobs of accounts.
func (t *tracker) timings(accounts []string) []timing {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]timing, 0, len(accounts))
	for _, a := range accounts {
		tr := t.accounts[a]
		if tr == nil || !tr.done {
			continue
		}
		tm := timing{finished: tr.finished.Sub(tr.requested), finishedAt: tr.finished}
		if tr.tasks > 0 && len(tr.dispatched) >= tr.tasks {
			var last time.Time
			for _, at := range tr.dispatched {
				if at.After(last) {
					last = at
				}
			}
			tm.allDispatched, tm.dispatched = true, last.Sub(tr.requested)
		}
		out = append(out, tm)
	}
	return out
}
