package worker_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

var benchAt = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// benchTask is a task message as the dispatcher sends it.
func benchTask() *erasurev1.ErasureTask {
	return &erasurev1.ErasureTask{
		JobId: "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", AccountId: "acc-0004711", Category: "contacts",
		Stage: "erase", Action: "delete", Generation: 1,
		RequestedAt: timestamppb.New(benchAt), Deadline: timestamppb.New(benchAt.AddDate(0, 1, 0)),
		DispatchedAt: timestamppb.New(benchAt.Add(time.Millisecond)),
	}
}

// benchReport is a success report as the runtime publishes it.
func benchReport() *erasurev1.TaskReport {
	return &erasurev1.TaskReport{
		JobId: "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", AccountId: "acc-0004711", Category: "contacts",
		Stage: "erase", Generation: 1, Attempt: 1, Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED,
		StartedAt: timestamppb.New(benchAt), FinishedAt: timestamppb.New(benchAt.Add(40 * time.Millisecond)),
		WorkerId: "contacts-worker-7f9c-1234", ItemsPurged: 6731,
	}
}

// BenchmarkDecodeTask measures what a worker does with every task message
// before its purge: protobuf decoding and the checks of ids and names.
//
//	go test -run '^$' -bench 'DecodeTask|Encode' -benchmem ./worker
func BenchmarkDecodeTask(b *testing.B) {
	data, err := proto.Marshal(benchTask())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := worker.DecodeTask(data, "contacts"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode measures the protobuf encoding of the two messages of
// every task: the task the dispatcher publishes and the report the worker
// publishes back.
func BenchmarkEncode(b *testing.B) {
	for _, bc := range []struct {
		name string
		msg  proto.Message
	}{{"task", benchTask()}, {"report", benchReport()}} {
		b.Run(bc.name, func(b *testing.B) {
			data, err := proto.Marshal(bc.msg)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := proto.Marshal(bc.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
