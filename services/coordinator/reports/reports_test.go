package reports

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

func marshal(t testing.TB, r *erasurev1.TaskReport) []byte {
	t.Helper()
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecode(t *testing.T) {
	good := &erasurev1.TaskReport{JobId: "01a2-b", AccountId: "acc-1", Category: "logs", Stage: "erase", Generation: 1, Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED}
	tests := []struct {
		name    string
		give    func(*erasurev1.TaskReport)
		wantErr string
	}{
		{"valid", func(*erasurev1.TaskReport) {}, ""},
		{"retrying is valid", func(r *erasurev1.TaskReport) { r.Outcome = erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING }, ""},
		{"no job", func(r *erasurev1.TaskReport) { r.JobId = "" }, "job_id"},
		{"e-mail as account", func(r *erasurev1.TaskReport) { r.AccountId = "bob@example.com" }, "account_id"},
		{"wildcard category", func(r *erasurev1.TaskReport) { r.Category = "*" }, "category"},
		{"no stage", func(r *erasurev1.TaskReport) { r.Stage = "" }, "stage"},
		{"no outcome", func(r *erasurev1.TaskReport) { r.Outcome = 0 }, "outcome"},
		{"unknown outcome", func(r *erasurev1.TaskReport) { r.Outcome = 42 }, "outcome"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := proto.Clone(good).(*erasurev1.TaskReport)
			tt.give(r)
			got, err := Decode(marshal(t, r))
			if tt.wantErr == "" {
				if err != nil || got.GetJobId() != "01a2-b" {
					t.Fatalf("Decode = %v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, ErrBadReport) || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "@") {
				t.Fatalf("Decode error = %v, want ErrBadReport about %s without the value", err, tt.wantErr)
			}
		})
	}
}

// FuzzDecode: reports come from the broker; decoding never panics and
// rejects with ErrBadReport only.
func FuzzDecode(f *testing.F) {
	f.Add(marshal(f, &erasurev1.TaskReport{JobId: "j", Category: "logs", Stage: "erase", Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_FAILED, ErrorMessage: "x"}))
	f.Add([]byte{0x0a, 0x81})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrBadReport) {
				t.Fatalf("error does not wrap ErrBadReport: %v", err)
			}
			return
		}
		if r.GetJobId() == "" || r.GetCategory() == "" || r.GetOutcome() == erasurev1.TaskOutcome_TASK_OUTCOME_UNSPECIFIED {
			t.Fatalf("accepted an incomplete report: %v", r)
		}
	})
}
