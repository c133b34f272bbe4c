package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

func TestEventPublishesWhatTheCoordinatorReads(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	if err := topology.Ensure(ctx, js, topology.DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvNATSURL: srv.URL}

	r := runCLI(t, env, "event", "acc-7", "--event-id", "evt-7", "--requested-by", "customer:acc-7", "-o", "json")
	if r.code != 0 {
		t.Fatalf("event: exit %d, stderr %s", r.code, r.stderr)
	}
	var res eventResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Sequence != 1 || res.Duplicate {
		t.Fatalf("result %s (%v)", r.stdout, err)
	}
	again := runCLI(t, env, "event", "acc-7", "--event-id", "evt-7", "-o", "json")
	if !strings.Contains(again.stdout, `"duplicate": true`) {
		t.Errorf("the same event id again: %s, want a duplicate", again.stdout)
	}
	r = runCLI(t, env, "event", "acc-8", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, "ACCOUNTS_V1") {
		t.Fatalf("event --json: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}

	st, _ := js.Stream(ctx, erasurev1.AccountsStream)
	m1, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var ev accountsv1.AccountDeleted
	if err := proto.Unmarshal(m1.Data, &ev); err != nil || ev.GetAccountId() != "acc-7" || ev.GetEventId() != "evt-7" || ev.GetRequestedBy() != "customer:acc-7" {
		t.Errorf("stored event = %v (%v)", &ev, err)
	}
	m2, err := st.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Header.Get(erasurev1.HeaderContentType) != erasurev1.ContentTypeJSON || protojson.Unmarshal(m2.Data, &ev) != nil || ev.GetAccountId() != "acc-8" {
		t.Errorf("json event = %q %v", m2.Data, m2.Header)
	}
}

func TestEventUsage(t *testing.T) {
	for _, args := range [][]string{{"event"}, {"event", "a", "b"}, {"event", "x@y.example"}, {"event", "acc", "--requested-by", ""}} {
		if r := runCLI(t, nil, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, r.code, ExitUsage)
		}
	}
}
