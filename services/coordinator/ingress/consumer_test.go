package ingress

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// recordingRequester records the requests that reach it.
type recordingRequester struct {
	mu       sync.Mutex
	accounts []string
	got      chan struct{}
}

func (r *recordingRequester) RequestErasure(_ context.Context, req jobs.Request) (*jobs.Job, bool, error) {
	if err := req.Validate(); err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	r.accounts = append(r.accounts, req.AccountID)
	r.mu.Unlock()
	r.got <- struct{}{}
	return &jobs.Job{ID: "job-" + req.AccountID, AccountID: req.AccountID}, true, nil
}

// TestOversizedAndMalformedEventsAreRejectedVisiblyAndDoNotBlock publishes
// an oversized event, garbage and an e-mail address as account id ahead of
// a good event on the real accounts stream: the bad ones are kept in the
// rejected stream with their reason (the oversized one cut to
// MaxEventBytes) and counted, the good one becomes a request, and nothing
// is left pending.
func TestOversizedAndMalformedEventsAreRejectedVisiblyAndDoNotBlock(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	if err := topology.Ensure(ctx, js, topology.Settings{Categories: []string{erasurev1.CategoryContacts}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, erasurev1.AccountsStream, erasurev1.IngressConsumer)
	if err != nil {
		t.Fatal(err)
	}
	event := func(acct, reason string) []byte {
		b, err := proto.Marshal(&accountsv1.AccountDeleted{EventId: "evt-" + acct, AccountId: acct, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	emailJSON := nats.NewMsg(erasurev1.AccountDeletedSubject)
	emailJSON.Header.Set(erasurev1.HeaderContentType, erasurev1.ContentTypeJSON)
	emailJSON.Data = []byte(`{"accountId":"someone@example.com"}`)
	for _, m := range []*nats.Msg{
		{Subject: erasurev1.AccountDeletedSubject, Data: event("acc-big", strings.Repeat("x", MaxEventBytes))},
		{Subject: erasurev1.AccountDeletedSubject, Data: []byte("\x0a\xff\xff garbage")},
		emailJSON,
		{Subject: erasurev1.AccountDeletedSubject, Data: event("acc-good", "")},
	} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	req := &recordingRequester{got: make(chan struct{}, 10)}
	c := New(cons, js, req, zaptest.NewLogger(t), prometheus.NewRegistry())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { stop(); <-done }()
	select {
	case <-req.got:
	case <-time.After(20 * time.Second):
		t.Fatal("the good event was not handled within 20s: the bad ones block the queue")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer still has %d pending, %d unacked", info.NumPending, info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}

	req.mu.Lock()
	if len(req.accounts) != 1 || req.accounts[0] != "acc-good" {
		t.Errorf("requests %v, want the good event's only", req.accounts)
	}
	req.mu.Unlock()
	st, err := js.Stream(ctx, erasurev1.RejectedStream)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("rejected event %d not kept: %v", seq, err)
		}
		reason := m.Header.Get(erasurev1.HeaderRejectReason)
		reasons = append(reasons, reason[:strings.IndexByte(reason, ':')])
		if strings.HasPrefix(reason, "oversized") && len(m.Data) != MaxEventBytes {
			t.Errorf("the oversized event is kept with %d bytes, want it cut to %d", len(m.Data), MaxEventBytes)
		}
		if strings.Contains(reason, "someone@example.com") {
			t.Errorf("the reason quotes the event: %q", reason)
		}
	}
	// Eight events are handled at once: the order in the stream is free.
	slices.Sort(reasons)
	if got := strings.Join(reasons, ","); got != "invalid,oversized,undecodable" {
		t.Errorf("rejection reasons %s, want invalid, oversized and undecodable", got)
	}
	for reason, want := range map[string]float64{"oversized": 1, "undecodable": 1, "invalid": 1} {
		if got := testutil.ToFloat64(c.rejected.WithLabelValues(reason)); got != want {
			t.Errorf("lethe_ingress_rejected_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}
