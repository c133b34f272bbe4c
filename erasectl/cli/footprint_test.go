package cli

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// respond answers FootprintRequests on category's subject the way a worker
// does, with answer's reply for the requested accounts, until the test ends.
func respond(t *testing.T, nc *nats.Conn, category string, answer func(req *erasurev1.FootprintRequest) *erasurev1.FootprintReply) {
	t.Helper()
	sub, err := nc.Subscribe(erasurev1.FootprintSubject(category), func(m *nats.Msg) {
		var req erasurev1.FootprintRequest
		if err := proto.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("responder %s: decode request: %v", category, err)
			return
		}
		reply := answer(&req)
		if reply == nil {
			return // never answer
		}
		data, err := proto.Marshal(reply)
		if err != nil {
			t.Errorf("responder %s: encode reply: %v", category, err)
			return
		}
		if err := m.Respond(data); err != nil {
			t.Errorf("responder %s: respond: %v", category, err)
		}
	})
	if err != nil {
		t.Fatalf("subscribe %s: %v", category, err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// contactsAnswer holds 10 contacts and 40 properties for "acct-full" and
// nothing for every other account.
func contactsAnswer(req *erasurev1.FootprintRequest) *erasurev1.FootprintReply {
	reply := &erasurev1.FootprintReply{Category: erasurev1.CategoryContacts}
	for _, id := range req.GetAccountIds() {
		af := &erasurev1.AccountFootprint{AccountId: id, Detail: map[string]int64{}}
		if id == "acct-full" {
			af.Items = 53
			af.Detail = map[string]int64{"contacts": 10, "contact_properties": 40, "lists": 3}
		}
		reply.Accounts = append(reply.Accounts, af)
	}
	return reply
}

func TestFootprint(t *testing.T) {
	srv := testenv.StartNATS(t)
	nc, _ := srv.Connect(t)
	respond(t, nc, erasurev1.CategoryContacts, contactsAnswer)
	respond(t, nc, erasurev1.CategoryBilling, func(*erasurev1.FootprintRequest) *erasurev1.FootprintReply {
		return &erasurev1.FootprintReply{Category: erasurev1.CategoryBilling, Error: "billing database unavailable"}
	})
	respond(t, nc, erasurev1.CategoryBackups, func(*erasurev1.FootprintRequest) *erasurev1.FootprintReply {
		return nil // a worker that hangs
	})
	respond(t, nc, "partial", func(req *erasurev1.FootprintRequest) *erasurev1.FootprintReply {
		// Answers for the first account only.
		return &erasurev1.FootprintReply{Category: "partial", Accounts: []*erasurev1.AccountFootprint{
			{AccountId: req.GetAccountIds()[0]},
		}}
	})
	env := map[string]string{EnvNATSURL: srv.URL}

	t.Run("all answer", func(t *testing.T) {
		r := runCLI(t, env, "footprint", "acct-full", "acct-gone", "--categories", "contacts")
		if r.code != ExitOK || r.stderr != "" {
			t.Fatalf("exit %d stderr %q", r.code, r.stderr)
		}
		want := `ACCOUNT    CATEGORY  ITEMS  DETAIL
acct-full  contacts  53     contact_properties=40 contacts=10 lists=3
acct-gone  contacts  0      -
`
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
	})

	t.Run("json", func(t *testing.T) {
		r := runCLI(t, env, "footprint", "acct-full", "acct-gone", "--categories", "contacts", "-o", "json")
		if r.code != ExitOK {
			t.Fatalf("exit %d stderr %q", r.code, r.stderr)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
		}
		want := map[string]any{"accounts": []any{
			map[string]any{"account_id": "acct-full", "categories": map[string]any{
				"contacts": map[string]any{"items": 53.0, "detail": map[string]any{"contacts": 10.0, "contact_properties": 40.0, "lists": 3.0}},
			}},
			map[string]any{"account_id": "acct-gone", "categories": map[string]any{
				"contacts": map[string]any{"items": 0.0, "detail": map[string]any{}},
			}},
		}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("json = %v\nwant %v", got, want)
		}
	})

	t.Run("a category without workers", func(t *testing.T) {
		r := runCLI(t, env, "footprint", "acct-full", "--categories", "contacts,logs")
		if r.code != ExitUnavailable {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitUnavailable, r.stderr)
		}
		want := `ACCOUNT    CATEGORY  ITEMS  DETAIL
acct-full  contacts  53     contact_properties=40 contacts=10 lists=3
acct-full  logs      -      no answer (is the logs worker running?)
`
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
		if !strings.HasPrefix(r.stderr, "erasectl: no usable answer from logs: start the workers") {
			t.Errorf("stderr = %q", r.stderr)
		}
	})

	t.Run("a worker that errs and one that hangs", func(t *testing.T) {
		r := runCLI(t, env, "footprint", "acct-full", "--categories", "billing,backups", "--timeout", "200ms", "-o", "json")
		if r.code != ExitUnavailable {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitUnavailable, r.stderr)
		}
		var got struct {
			Accounts []struct {
				Categories map[string]map[string]any `json:"categories"`
			} `json:"accounts"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
		}
		cats := got.Accounts[0].Categories
		if cats["billing"]["error"] != "worker error: billing database unavailable" {
			t.Errorf("billing = %v", cats["billing"])
		}
		if cats["backups"]["error"] != "no answer (is the backups worker running?)" {
			t.Errorf("backups = %v", cats["backups"])
		}
		if _, ok := cats["billing"]["items"]; ok {
			t.Errorf("billing has items although it did not answer: %v", cats["billing"])
		}
		if !strings.Contains(r.stderr, "no usable answer from billing, backups") {
			t.Errorf("stderr = %q", r.stderr)
		}
	})

	t.Run("an answer that leaves out an account", func(t *testing.T) {
		r := runCLI(t, env, "footprint", "acct-full", "acct-other", "--categories", "partial")
		if r.code != ExitError {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitError, r.stderr)
		}
		if !strings.Contains(r.stdout, "acct-other  partial   -      left out of the worker's answer") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
	})

	t.Run("NATS unreachable", func(t *testing.T) {
		r := runCLI(t, map[string]string{EnvNATSURL: "nats://" + freeAddr(t)}, "footprint", "acct-full")
		if r.code != ExitUnavailable {
			t.Fatalf("exit %d, want %d", r.code, ExitUnavailable)
		}
		if !strings.HasPrefix(r.stderr, "erasectl: cannot reach NATS at nats://") || !strings.Contains(r.stderr, "or set LETHE_NATS_URL") {
			t.Errorf("stderr = %q", r.stderr)
		}
	})
}

func TestFormatDetail(t *testing.T) {
	tests := []struct {
		give map[string]int64
		want string
	}{
		{give: nil, want: "-"},
		{give: map[string]int64{}, want: "-"},
		{give: map[string]int64{"b": 2, "a": 1, "c": 0}, want: "a=1 b=2 c=0"},
	}
	for _, tt := range tests {
		if got := formatDetail(tt.give); got != tt.want {
			t.Errorf("formatDetail(%v) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
