package worker

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

func encode(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeTask(t *testing.T) {
	good := &erasurev1.ErasureTask{JobId: "01a2-b3", AccountId: "acc-1", Category: "logs", Stage: "erase", Action: "delete", Generation: 2}
	tests := []struct {
		name    string
		give    func(*erasurev1.ErasureTask)
		wantErr string
	}{
		{"valid", func(*erasurev1.ErasureTask) {}, ""},
		{"e-mail as account", func(m *erasurev1.ErasureTask) { m.AccountId = "ann@example.com" }, "account_id"},
		{"empty job", func(m *erasurev1.ErasureTask) { m.JobId = "" }, "job_id"},
		{"other category", func(m *erasurev1.ErasureTask) { m.Category = "billing" }, "category"},
		{"bad stage", func(m *erasurev1.ErasureTask) { m.Stage = "Erase Now" }, "stage"},
		{"bad action", func(m *erasurev1.ErasureTask) { m.Action = "rm -rf" }, "action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := proto.Clone(good).(*erasurev1.ErasureTask)
			tt.give(m)
			task, err := DecodeTask(encode(t, m), "logs")
			if tt.wantErr == "" {
				if err != nil || task.JobID != "01a2-b3" || task.Generation != 2 {
					t.Fatalf("DecodeTask = %+v, %v", task, err)
				}
				return
			}
			if !errors.Is(err, ErrBadTask) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeTask error = %v, want ErrBadTask about %s", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "@") {
				t.Errorf("error echoes a value: %v", err)
			}
		})
	}
	if _, err := DecodeTask([]byte{0x0a, 0xff}, "logs"); !errors.Is(err, ErrBadTask) {
		t.Errorf("garbage: %v", err)
	}
}

// FuzzDecodeTask: task messages come from the broker, outside this
// process. Decoding never panics, every rejection wraps ErrBadTask without
// echoing input, and what is accepted has well-formed ids.
func FuzzDecodeTask(f *testing.F) {
	f.Add(encode(f, &erasurev1.ErasureTask{JobId: "j1", AccountId: "acc-1", Category: "logs", Stage: "erase", Action: "delete"}))
	f.Add(encode(f, &erasurev1.ErasureTask{JobId: "j1", AccountId: "x@y", Category: "logs", Stage: "erase"}))
	f.Add([]byte{0x0a, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		task, err := DecodeTask(data, "logs")
		if err != nil {
			if !errors.Is(err, ErrBadTask) {
				t.Fatalf("error does not wrap ErrBadTask: %v", err)
			}
			return
		}
		if !accountIDPattern.MatchString(task.AccountID) || !jobIDPattern.MatchString(task.JobID) || task.Category != "logs" {
			t.Fatalf("accepted a malformed task: %+v", task)
		}
	})
}

func TestDecodeFootprintRequest(t *testing.T) {
	tests := []struct {
		name    string
		give    []byte
		want    int
		wantErr string
	}{
		{name: "two accounts", give: encode(t, &erasurev1.FootprintRequest{AccountIds: []string{"acc-1", "acc-2"}}), want: 2},
		{name: "none", give: encode(t, &erasurev1.FootprintRequest{}), wantErr: "names 1 to 1000 accounts, not 0"},
		{name: "too many", give: encode(t, &erasurev1.FootprintRequest{AccountIds: make([]string, MaxFootprintAccounts+1)}), wantErr: "not 1001"},
		{name: "an e-mail address", give: encode(t, &erasurev1.FootprintRequest{AccountIds: []string{"acc-1", "alice@example.com"}}), wantErr: "account id 2 of 2 is malformed"},
		{name: "garbage", give: []byte{0x0a, 0xff}, wantErr: "not a protobuf FootprintRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, err := DecodeFootprintRequest(tt.give)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadFootprintRequest) || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "alice") {
					t.Fatalf("DecodeFootprintRequest() error = %v, want ErrBadFootprintRequest containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(ids) != tt.want {
				t.Fatalf("DecodeFootprintRequest() = %v, %v", ids, err)
			}
		})
	}
}

// FuzzDecodeFootprintRequest: footprint requests come from any client the
// broker lets ask. Decoding never panics, every rejection wraps
// ErrBadFootprintRequest without echoing input, and what is accepted is 1
// to MaxFootprintAccounts well-formed ids.
func FuzzDecodeFootprintRequest(f *testing.F) {
	f.Add(encode(f, &erasurev1.FootprintRequest{AccountIds: []string{"acc-1", "demo-0002"}}))
	f.Add(encode(f, &erasurev1.FootprintRequest{AccountIds: []string{"x@y"}}))
	f.Add(encode(f, &erasurev1.FootprintRequest{}))
	f.Add([]byte{0x0a, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := DecodeFootprintRequest(data)
		if err != nil {
			if !errors.Is(err, ErrBadFootprintRequest) {
				t.Fatalf("error does not wrap ErrBadFootprintRequest: %v", err)
			}
			return
		}
		if len(ids) == 0 || len(ids) > MaxFootprintAccounts {
			t.Fatalf("accepted %d accounts", len(ids))
		}
		for _, id := range ids {
			if !accountIDPattern.MatchString(id) {
				t.Fatalf("accepted a malformed account id %q", id)
			}
		}
	})
}

func TestCutMessage(t *testing.T) {
	tests := []struct {
		give string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 20), 15, "aaaaaa …(cut)"},
		{strings.Repeat("é", 10), 14, "éé …(cut)"},
	}
	for _, tt := range tests {
		got := cutMessage(tt.give, tt.n)
		if got != tt.want || len(got) > tt.n {
			t.Errorf("cutMessage(%q, %d) = %q, want %q (at most %d bytes)", tt.give, tt.n, got, tt.want, tt.n)
		}
	}
}
