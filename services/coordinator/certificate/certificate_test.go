package certificate

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

var t0 = time.Date(2026, 6, 15, 10, 15, 0, 123_000_000, time.UTC)

// endedJob runs a job of the usual plan through the domain's own rules:
// backups suppress first, then contacts, logs and billing; billing fails
// once with a store message that names a person, is replayed, and
// succeeds.
func endedJob(t *testing.T) *jobs.Job {
	t.Helper()
	backups := jobs.TaskKey{Category: "backups", Stage: "erase"}
	j, err := jobs.New("0190a3b4-0000-7000-8000-000000000001", jobs.Request{
		AccountID: "acc-42", Origin: jobs.OriginAPI, RequestedBy: "privacy:jdoe", Reason: "DSR ticket 4711",
	}, []jobs.TaskSpec{
		{Category: "backups", Stage: "erase", Action: "suppress"},
		{Category: "contacts", Stage: "erase", Action: "delete", DependsOn: []jobs.TaskKey{backups}},
		{Category: "billing", Stage: "erase", Action: "pseudonymise", DependsOn: []jobs.TaskKey{backups}},
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	report := func(cat string, ok bool, items int64, gen uint32, at time.Duration) {
		t.Helper()
		r := jobs.Report{Task: jobs.TaskKey{Category: cat, Stage: "erase"}, Generation: gen, Succeeded: ok, Items: items, Attempt: 1, At: t0.Add(at)}
		if !ok {
			r.ErrorCode, r.Error = "store_error", `duplicate key: customer "Erika Mustermann <erika@example.com>"`
		}
		if _, err := j.ApplyReport(r); err != nil {
			t.Fatal(err)
		}
	}
	report("backups", true, 3, 1, time.Second)
	report("contacts", true, 1500, 1, 2*time.Second)
	report("billing", false, 0, 1, 3*time.Second)
	if j.Status != jobs.StatusFailed {
		t.Fatalf("job is %s, want failed", j.Status)
	}
	if _, err := j.Replay(jobs.ReplaySelector{}, "sre:anna", "PRIV-12 billing store fixed", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	report("billing", true, 12, 2, time.Hour+time.Minute)
	if j.Status != jobs.StatusCompleted {
		t.Fatalf("job is %s, want completed", j.Status)
	}
	return j
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestBuildStatesWhatWasDone(t *testing.T) {
	j := endedJob(t)
	c, err := Build(j, t0.Add(2*time.Hour), "lethe-coordinator")
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != FormatV1 || c.JobID != j.ID || c.AccountID != "acc-42" || c.Status != "completed" ||
		c.RequestedBy != "privacy:jdoe" || c.Reason != "DSR ticket 4711" || c.Origin != "api" {
		t.Errorf("header: %+v", c)
	}
	if c.CreatedAt != "2026-06-15T10:15:00.123Z" || c.Deadline != "2026-07-15T10:15:00.123Z" || c.FinishedAt != "2026-06-15T11:16:00.123Z" {
		t.Errorf("times: created %s deadline %s finished %s", c.CreatedAt, c.Deadline, c.FinishedAt)
	}
	if !c.FinishedBeforeDeadline || c.ItemsPurged != 1515 || c.PolicyVersion != "" {
		t.Errorf("deadline met %v, items %d, policy %q", c.FinishedBeforeDeadline, c.ItemsPurged, c.PolicyVersion)
	}
	if len(c.Tasks) != 3 {
		t.Fatalf("%d tasks, want 3", len(c.Tasks))
	}
	bill := c.Tasks[2]
	if bill.Category != "billing" || bill.Action != "pseudonymise" || bill.Status != "succeeded" || bill.Generation != 2 ||
		bill.Attempts != 2 || bill.ItemsPurged != 12 || bill.ErrorCode != "" || bill.DispatchedAt == "" || bill.FinishedAt == "" {
		t.Errorf("billing task: %+v", bill)
	}
	if len(bill.Replays) != 1 || bill.Replays[0].Actor != "sre:anna" || bill.Replays[0].Reason != "PRIV-12 billing store fixed" {
		t.Errorf("billing replays: %+v", bill.Replays)
	}
	if len(c.Retained) != 2 || c.Retained[0].Category != "backups" || c.Retained[1].Category != "billing" ||
		!strings.Contains(c.Retained[1].LegalBasis, "AO §147(3)") || !strings.Contains(c.Retained[1].LegalBasis, "HGB §257(4)") ||
		c.Retained[1].RetainedUntil != "" {
		t.Errorf("retained: %+v", c.Retained)
	}
}

func TestBuildLeavesFreeTextErrorsOut(t *testing.T) {
	j := endedJob(t)
	// Fail it again so that the job carries a free-text error now.
	if _, err := j.Replay(jobs.ReplaySelector{Category: "billing"}, "sre:anna", "again", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := j.ApplyReport(jobs.Report{Task: jobs.TaskKey{Category: "billing", Stage: "erase"}, Generation: 3, ErrorCode: "store_error",
		Error: `customer "erika@example.com" locked`, Attempt: 1, At: t0.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusFailed || j.Error == "" {
		t.Fatalf("job %s error %q", j.Status, j.Error)
	}
	c, err := Build(j, t0.Add(4*time.Hour), "lethe-coordinator")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"erika", "Mustermann", "example.com", "locked", "duplicate key"} {
		if bytes.Contains(b, []byte(bad)) {
			t.Errorf("certificate holds %q:\n%s", bad, b)
		}
	}
	if c.Tasks[2].ErrorCode != "store_error" {
		t.Errorf("billing error code %q, want store_error", c.Tasks[2].ErrorCode)
	}
	if len(c.Retained) != 1 || c.Retained[0].Category != "backups" {
		t.Errorf("a failed pseudonymisation retains nothing it could state: %+v", c.Retained)
	}
}

func TestBuildRefusesUnfinishedJob(t *testing.T) {
	j, err := jobs.New("0190a3b4-0000-7000-8000-000000000002", jobs.Request{AccountID: "acc-1", Origin: jobs.OriginAPI, RequestedBy: "privacy:x", Reason: "r"},
		[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(j, t0, "lethe-coordinator"); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("err %v, want ErrConflict", err)
	}
	if _, err := Build(nil, t0, "x"); !errors.Is(err, jobs.ErrInvalid) {
		t.Fatalf("nil job: err %v, want ErrInvalid", err)
	}
}

func TestEncodingIsDeterministic(t *testing.T) {
	j := endedJob(t)
	c1, _ := Build(j, t0, "lethe-coordinator")
	// A copy of the job that travelled through JSON, as one loaded from
	// Redis does, and times in another zone: the same bytes.
	raw, _ := json.Marshal(j)
	var j2 jobs.Job
	if err := json.Unmarshal(raw, &j2); err != nil {
		t.Fatal(err)
	}
	berlin := time.FixedZone("CEST", 2*3600)
	j2.CreatedAt = j2.CreatedAt.In(berlin)
	c2, _ := Build(&j2, t0.In(berlin), "lethe-coordinator")
	b1, err := Encode(c1)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := Encode(c2)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encodings differ:\n%s\n%s", b1, b2)
	}
	if !bytes.HasPrefix(b1, []byte(`{"format":"lethe.erasure-certificate.v1","issuer":"lethe-coordinator","issued_at":"2026-06-15T10:15:00.123Z",`)) {
		t.Errorf("field order or time form changed:\n%s", b1)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b1); err != nil || !bytes.Equal(compact.Bytes(), b1) {
		t.Errorf("not compact JSON: %v", err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	c, _ := Build(endedJob(t), t0, "lethe-coordinator")
	c.Reason = "ticket <4711> & co \u2028 §17"
	s, err := Sign(c, priv, KeyID(pub))
	if err != nil {
		t.Fatal(err)
	}
	// Re-encoded by an encoder that does not escape HTML, as a client
	// might: the bytes stay those signed.
	var reenc bytes.Buffer
	enc := json.NewEncoder(&reenc)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "\t")
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	var s2 SignedCertificate
	if err := json.Unmarshal(reenc.Bytes(), &s2); err != nil {
		t.Fatal(err)
	}
	if err := Verify(s2, pub); err != nil {
		t.Fatalf("verify after re-encoding: %v", err)
	}
	got, err := Open(s, pub)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if got.JobID != c.JobID || got.Reason != c.Reason || len(got.Tasks) != 3 || got.Tasks[2].Replays[0].Actor != "sre:anna" {
		t.Errorf("opened %+v", got)
	}
	// Through JSON and pretty-printed, as an auditor's file is.
	raw, _ := json.MarshalIndent(s, "", "  ")
	var back SignedCertificate
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(back.Certificate, s.Certificate) {
		t.Fatal("expected the indented file to hold other bytes")
	}
	if err := Verify(back, pub); err != nil {
		t.Fatalf("verify the pretty-printed envelope: %v", err)
	}
}

func TestTamperingAnyByteIsDetected(t *testing.T) {
	pub, priv := newKey(t)
	c, _ := Build(endedJob(t), t0, "lethe-coordinator")
	s, err := Sign(c, priv, KeyID(pub))
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Certificate {
		for _, flip := range []byte{0x01, 0x20} {
			bad := s
			bad.Certificate = bytes.Clone(s.Certificate)
			bad.Certificate[i] ^= flip
			if err := Verify(bad, pub); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("byte %d ^ %#x (%q): err %v, want ErrBadSignature", i, flip, s.Certificate[i], err)
			}
		}
	}
	sig := []byte(s.Signature)
	sig[10] ^= 0x01
	if err := Verify(SignedCertificate{Certificate: s.Certificate, Signature: string(sig), KeyID: s.KeyID, Algorithm: s.Algorithm}, pub); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("tampered signature: %v", err)
	}
}

func TestVerifyFailures(t *testing.T) {
	pub, priv := newKey(t)
	otherPub, _ := newKey(t)
	c, _ := Build(endedJob(t), t0, "lethe-coordinator")
	good, err := Sign(c, priv, KeyID(pub))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		give  func(SignedCertificate) SignedCertificate
		key   ed25519.PublicKey
		want  error
		saysN string
	}{
		{"wrong key", func(s SignedCertificate) SignedCertificate { return s }, otherPub, ErrBadSignature, "names key " + KeyID(pub)},
		{"wrong key, no key id", func(s SignedCertificate) SignedCertificate { s.KeyID = ""; return s }, otherPub, ErrBadSignature, "changed after"},
		{"other algorithm", func(s SignedCertificate) SignedCertificate { s.Algorithm = "rsa"; return s }, pub, ErrMalformed, "algorithm"},
		{"signature not base64", func(s SignedCertificate) SignedCertificate { s.Signature = "!!"; return s }, pub, ErrMalformed, "base64"},
		{"short signature", func(s SignedCertificate) SignedCertificate { s.Signature = "AAAA"; return s }, pub, ErrMalformed, "64 bytes"},
		{"no certificate", func(s SignedCertificate) SignedCertificate { s.Certificate = nil; return s }, pub, ErrMalformed, "no certificate"},
		{"short key", func(s SignedCertificate) SignedCertificate { return s }, pub[:31], ErrMalformed, "public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.give(good), tt.key)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.saysN) {
				t.Fatalf("err %v, want %v saying %q", err, tt.want, tt.saysN)
			}
		})
	}
	// Validly signed but not a certificate: malformed, not a bad signature.
	doc := []byte(`{"format":"something-else"}`)
	s := SignedCertificate{Certificate: doc, Signature: signB64(priv, doc), KeyID: KeyID(pub), Algorithm: AlgorithmEd25519}
	if err := Verify(s, pub); !errors.Is(err, ErrMalformed) {
		t.Fatalf("foreign document: %v", err)
	}
}

func TestSignerIssues(t *testing.T) {
	_, priv := newKey(t)
	s, err := NewSigner(priv, "lethe-coordinator")
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return t0 }
	sc, err := s.Issue(endedJob(t))
	if err != nil {
		t.Fatal(err)
	}
	if sc.KeyID != s.KeyID() || !strings.HasPrefix(sc.KeyID, "ed25519-") || len(sc.KeyID) != len("ed25519-")+16 {
		t.Errorf("key id %q", sc.KeyID)
	}
	if err := Verify(sc, s.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "certificate.pem")
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v created %v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("load again: %v created %v equal %v", err, created, k1.Equal(k2))
	}
	pub, _ := k1.Public().(ed25519.PublicKey)
	pemBytes, err := PublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pubPath, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadPublicKey(pubPath)
	if err != nil || !got.Equal(pub) {
		t.Fatalf("load public: %v", err)
	}
	if _, err := LoadKey(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, ErrNoKey) {
		t.Errorf("missing key: %v", err)
	}
	if _, err := LoadPublicKey(path); !errors.Is(err, ErrMalformed) {
		t.Errorf("private key given as public: %v", err)
	}
	if _, err := LoadKey(pubPath); err == nil {
		t.Error("public key loaded as private")
	}
	if fp := Fingerprint(pub); len(fp) != 64 || KeyID(pub) != "ed25519-"+fp[:16] {
		t.Errorf("fingerprint %q key id %q", fp, KeyID(pub))
	}
}

func signB64(priv ed25519.PrivateKey, b []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, b))
}
