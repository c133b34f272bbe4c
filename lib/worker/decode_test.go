package worker

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

func encode(t testing.TB, m *erasurev1.ErasureTask) []byte {
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
