package jobstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
)

// benchPlan is the shipped plan's shape: backups first, the other three
// waiting for it.
func benchPlan() []jobs.TaskSpec {
	deps := []jobs.TaskKey{{Category: "backups", Stage: "erase"}}
	return []jobs.TaskSpec{
		{Category: "backups", Stage: "erase", Action: "suppress"},
		{Category: "contacts", Stage: "erase", Action: "delete", DependsOn: deps},
		{Category: "logs", Stage: "erase", Action: "delete", DependsOn: deps},
		{Category: "billing", Stage: "erase", Action: "pseudonymise", DependsOn: deps},
	}
}

func benchJob(b *testing.B, i int) *jobs.Job {
	b.Helper()
	j, err := jobs.New(fmt.Sprintf("0190a3b4-0000-7000-8000-%012d", i), jobs.Request{
		AccountID: fmt.Sprintf("acc-%07d", i), Origin: jobs.OriginDashboard, RequestedBy: "dashboard", EventID: fmt.Sprintf("evt-%d", i),
	}, benchPlan(), t0)
	if err != nil {
		b.Fatal(err)
	}
	return j
}

func benchStore(b *testing.B) *jobstore.Store {
	b.Helper()
	rdb, prefix := testenv.Redis(b)
	return jobstore.New(rdb, prefix)
}

// createJobs stores n jobs and marks their backups task dispatched, as
// they are when the first report arrives.
func createJobs(b *testing.B, s *jobstore.Store, n int) []*jobs.Job {
	b.Helper()
	ctx := context.Background()
	backups := jobs.TaskKey{Category: "backups", Stage: "erase"}
	out := make([]*jobs.Job, n)
	for i := range out {
		j, _, err := s.Create(ctx, benchJob(b, i))
		if err != nil {
			b.Fatal(err)
		}
		j, err = s.Update(ctx, j.ID, func(j *jobs.Job) error {
			t, err := j.Task(backups)
			if err != nil {
				return err
			}
			_, err = j.MarkDispatched(backups, t.Generation, t0)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = j
	}
	return out
}

// BenchmarkCreate measures storing a new job: one Lua script that checks
// the account's and the event's guards and writes the job, its indexes and
// its due entries.
//
//	go test -run '^$' -bench . -benchmem ./jobstore
func BenchmarkCreate(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	js := make([]*jobs.Job, b.N)
	for i := range js {
		js[i] = benchJob(b, i)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, created, err := s.Create(ctx, js[i]); err != nil || !created {
			b.Fatalf("create: %v %v", created, err)
		}
	}
}

// BenchmarkGet measures loading a job (GET and JSON decoding).
func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	j := createJobs(b, s, 1)[0]
	for b.Loop() {
		if _, err := s.Get(ctx, j.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateReport is the report's round trip through Redis, as the
// coordinator applies it: read, decode, ApplyReport, encode, and the
// compare-and-set script with the job and its index changes. Each iteration applies the
// backups report of its own job (which releases the other three tasks);
// "duplicate" applies one that changes nothing, as for a redelivered
// report.
func BenchmarkUpdateReport(b *testing.B) {
	backups := jobs.TaskKey{Category: "backups", Stage: "erase"}
	apply := func(b *testing.B, s *jobstore.Store, j *jobs.Job) {
		b.Helper()
		_, err := s.Update(context.Background(), j.ID, func(j *jobs.Job) error {
			t, err := j.Task(backups)
			if err != nil {
				return err
			}
			eff, err := j.ApplyReport(jobs.Report{Task: backups, Generation: t.Generation, Succeeded: true, Items: 1, Attempt: 1, At: t0.Add(time.Second)})
			if err != nil {
				return err
			}
			if eff.Result != jobs.ReportApplied {
				return jobstore.ErrNoChange
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("applied", func(b *testing.B) {
		s := benchStore(b)
		js := createJobs(b, s, b.N)
		b.ResetTimer()
		for i := range b.N {
			apply(b, s, js[i])
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		s := benchStore(b)
		j := createJobs(b, s, 1)[0]
		apply(b, s, j)
		for b.Loop() {
			apply(b, s, j)
		}
	})
}

// BenchmarkJobJSON measures the job's encoding in Redis, which every Get
// and Update pays: a four-task job after its reports.
func BenchmarkJobJSON(b *testing.B) {
	j := benchJob(b, 1)
	at := t0
	for i := range j.Tasks {
		k := j.Tasks[i].Key()
		if _, err := j.MarkDispatched(k, j.Tasks[i].Generation, at); err != nil {
			b.Fatal(err)
		}
	}
	data, err := json.Marshal(j)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("job document: %d bytes", len(data))
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := json.Marshal(j); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var out jobs.Job
			if err := json.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
