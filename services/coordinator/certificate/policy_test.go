package certificate

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// erasedJob is a dashboard deletion under a retention policy, forced by
// the privacy team and extended, whose erasing stages are done: billing's
// retained invoices and the backup copies are still kept, each with its
// date.
func erasedJob(t *testing.T) *jobs.Job {
	t.Helper()
	backups := jobs.TaskKey{Category: "backups", Stage: "erase"}
	billing := jobs.TaskKey{Category: "billing", Stage: "erase"}
	grace := 14 * 24 * time.Hour
	j, err := jobs.NewPlanned("0190a3b4-0000-7000-8000-000000000009", jobs.Request{
		AccountID: "acc-77", Origin: jobs.OriginDashboard, RequestedBy: "dashboard:acc-77",
	}, jobs.Plan{Grace: grace, PolicyVersion: "2026-11-29.1", PolicyFingerprint: "sha256:abc", Tasks: []jobs.TaskSpec{
		{Category: "backups", Stage: "erase", Action: "suppress", After: grace, LegalBasis: "GDPR Art. 17(1)"},
		{Category: "backups", Stage: "verify_rotated", Action: "verify_rotated", After: grace + 35*24*time.Hour, Retention: true,
			LegalBasis: "privacy policy §7", DependsOn: []jobs.TaskKey{backups}},
		{Category: "billing", Stage: "erase", Action: "pseudonymise", After: grace, DependsOn: []jobs.TaskKey{backups}},
		{Category: "billing", Stage: "delete_retained", Action: "delete_retained", After: grace, Retention: true,
			LegalBasis: "AO §147(3)", Calendar: &jobs.Calendar{Anchor: "invoice_issued", PlusYears: 8, Zone: "Europe/Berlin"},
			DependsOn: []jobs.TaskKey{billing}},
	}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []jobs.ActionRequest{
		{Kind: jobs.ActionForce, Actor: "privacy:jdoe", Reason: "customer asked by mail", Ticket: "PRIV-1"},
		{Kind: jobs.ActionExtend, Actor: "privacy:jdoe", Reason: "numerous requests", Months: 1},
	} {
		if _, err := j.Act(a, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []jobs.Report{
		{Task: backups, Generation: 1, Succeeded: true, Items: 2, Attempt: 1, At: t0.Add(2 * time.Hour)},
		{Task: billing, Generation: 1, Succeeded: true, Items: 30, Attempt: 1, At: t0.Add(3 * time.Hour),
			Anchors: map[string]time.Time{"invoice_issued": time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC)}},
	} {
		if _, err := j.ApplyReport(r); err != nil {
			t.Fatal(err)
		}
	}
	if j.Status != jobs.StatusErased {
		t.Fatalf("job is %s, want erased", j.Status)
	}
	return j
}

func TestCertificateOfAnErasedJobDatesWhatIsRetained(t *testing.T) {
	j := erasedJob(t)
	c, err := Build(j, t0.Add(4*time.Hour), "lethe-test")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != "erased" || c.PolicyVersion != "2026-11-29.1" || c.PolicyFingerprint != "sha256:abc" || c.ErasedAt != stamp(t0.Add(3*time.Hour)) || !c.FinishedBeforeDeadline {
		t.Fatalf("certificate header %+v", c)
	}
	if c.OriginalDeadline == "" || c.Deadline == c.OriginalDeadline {
		t.Errorf("extended deadline not shown: deadline %s, original %s", c.Deadline, c.OriginalDeadline)
	}
	if len(c.Actions) != 2 || c.Actions[0].Kind != "force" || c.Actions[0].Ticket != "PRIV-1" || c.Actions[1].Months != 1 {
		t.Errorf("actions %+v", c.Actions)
	}
	want := map[string]Retention{
		"backups": {Stage: "backups/verify_rotated", LegalBasis: "privacy policy §7", RetainedUntil: stamp(t0.Add(time.Hour + 35*24*time.Hour))},
		"billing": {Stage: "billing/delete_retained", LegalBasis: "AO §147(3)", RetainedUntil: "2034-12-31T23:00:00Z"},
	}
	if len(c.Retained) != 2 {
		t.Fatalf("retained %+v, want billing and backups", c.Retained)
	}
	for _, r := range c.Retained {
		w := want[r.Category]
		if r.Stage != w.Stage || r.LegalBasis != w.LegalBasis || r.RetainedUntil != w.RetainedUntil || r.DeletedAt != "" {
			t.Errorf("retained %s = %+v, want %+v", r.Category, r, w)
		}
	}

	// Signed, it verifies offline; changed, it does not.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	signed, err := Sign(c, priv, KeyID(pub))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(signed, pub); err != nil {
		t.Fatalf("verify: %v", err)
	}
	signed.Certificate[len(signed.Certificate)/2] ^= 1
	if err := Verify(signed, pub); err == nil {
		t.Fatal("a changed certificate verified")
	}
}
