package reports_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/reports"
)

// BenchmarkDecode measures what the coordinator does with every report
// before applying it: protobuf decoding and the checks of ids, category
// and outcome.
//
//	go test -run '^$' -bench Decode -benchmem ./reports
func BenchmarkDecode(b *testing.B) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	data, err := proto.Marshal(&erasurev1.TaskReport{
		JobId: "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", AccountId: "acc-0004711", Category: "contacts",
		Stage: "erase", Generation: 1, Attempt: 1, Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED,
		StartedAt: timestamppb.New(at), FinishedAt: timestamppb.New(at.Add(40 * time.Millisecond)),
		WorkerId: "contacts-worker-7f9c-1234", ItemsPurged: 6731,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := reports.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
