package jobs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// benchPlan is the shipped plan's shape: the backups ledger entry first,
// then contacts, logs and billing, each waiting for it.
func benchPlan() []jobs.TaskSpec {
	backups := jobs.TaskKey{Category: "backups", Stage: "erase"}
	deps := []jobs.TaskKey{backups}
	return []jobs.TaskSpec{
		{Category: "backups", Stage: "erase", Action: "suppress"},
		{Category: "contacts", Stage: "erase", Action: "delete", DependsOn: deps},
		{Category: "logs", Stage: "erase", Action: "delete", DependsOn: deps},
		{Category: "billing", Stage: "erase", Action: "pseudonymise", DependsOn: deps},
	}
}

var benchT0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func benchJob(b *testing.B, i int) *jobs.Job {
	b.Helper()
	j, err := jobs.New(fmt.Sprintf("0190a3b4-0000-7000-8000-%012d", i), jobs.Request{
		AccountID: fmt.Sprintf("acc-%07d", i), Origin: jobs.OriginDashboard, RequestedBy: "dashboard", EventID: fmt.Sprintf("evt-%d", i),
	}, benchPlan(), benchT0)
	if err != nil {
		b.Fatal(err)
	}
	return j
}

// gen is the task's current dispatch generation.
func gen(b *testing.B, j *jobs.Job, k jobs.TaskKey) uint32 {
	b.Helper()
	t, err := j.Task(k)
	if err != nil {
		b.Fatal(err)
	}
	return t.Generation
}

func succeeded(k jobs.TaskKey, g uint32, at time.Time) jobs.Report {
	return jobs.Report{Task: k, Generation: g, Succeeded: true, Items: 12, Attempt: 1, At: at}
}

// dispatchAndReport dispatches every scheduled task and applies its
// success, until the job ends, as the coordinator does over a job's life.
func dispatchAndReport(b *testing.B, j *jobs.Job) int {
	b.Helper()
	applied := 0
	at := benchT0
	for range 4 {
		var due []jobs.TaskKey
		for i := range j.Tasks {
			if j.Tasks[i].Status == jobs.TaskScheduled {
				due = append(due, j.Tasks[i].Key())
			}
		}
		if len(due) == 0 {
			break
		}
		for _, k := range due {
			at = at.Add(time.Millisecond)
			g := gen(b, j, k)
			if _, err := j.MarkDispatched(k, g, at); err != nil {
				b.Fatal(err)
			}
			eff, err := j.ApplyReport(succeeded(k, g, at.Add(time.Millisecond)))
			if err != nil || eff.Result != jobs.ReportApplied {
				b.Fatalf("apply %s: %v %v", k, eff.Result, err)
			}
			applied++
		}
	}
	return applied
}

// BenchmarkNew measures building a job of the shipped plan: validation,
// deadline, four tasks.
//
//	go test -run '^$' -bench 'New|ApplyReport' -benchmem ./jobs
func BenchmarkNew(b *testing.B) {
	i := 0
	for b.Loop() {
		benchJob(b, i)
		i++
	}
}

// BenchmarkApplyReport measures the report rules alone, in memory (the
// jobstore round trip is BenchmarkUpdateReport in package jobstore):
//
//   - "release": the backups report, which releases the three waiting
//     tasks (setup excluded from the time);
//   - "lifecycle": a whole job's four dispatches and four reports, which
//     ends it (job creation excluded);
//   - "duplicate": a report of a task that already has its outcome, what
//     a redelivered report costs.
func BenchmarkApplyReport(b *testing.B) {
	backups := jobs.TaskKey{Category: "backups", Stage: "erase"}
	// Jobs are built before the timer starts: stopping the timer in every
	// iteration would make the run take minutes.
	b.Run("release", func(b *testing.B) {
		js := make([]*jobs.Job, b.N)
		reps := make([]jobs.Report, b.N)
		for i := range js {
			js[i] = benchJob(b, i)
			g := gen(b, js[i], backups)
			if _, err := js[i].MarkDispatched(backups, g, benchT0); err != nil {
				b.Fatal(err)
			}
			reps[i] = succeeded(backups, g, benchT0.Add(time.Millisecond))
		}
		b.ResetTimer()
		for i := range b.N {
			eff, err := js[i].ApplyReport(reps[i])
			if err != nil || eff.Result != jobs.ReportApplied {
				b.Fatalf("apply: %v %v", eff.Result, err)
			}
		}
	})
	b.Run("lifecycle", func(b *testing.B) {
		js := make([]*jobs.Job, b.N)
		for i := range js {
			js[i] = benchJob(b, i)
		}
		b.ResetTimer()
		for i := range b.N {
			if n := dispatchAndReport(b, js[i]); n != 4 || !js[i].Status.Terminal() {
				b.Fatalf("applied %d reports, job %s", n, js[i].Status)
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		j := benchJob(b, 0)
		dispatchAndReport(b, j)
		rep := succeeded(backups, gen(b, j, backups), benchT0.Add(time.Second))
		for b.Loop() {
			eff, err := j.ApplyReport(rep)
			if err != nil || eff.Result != jobs.ReportDuplicate {
				b.Fatalf("apply: %v %v", eff.Result, err)
			}
		}
	})
}
