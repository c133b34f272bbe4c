package apiauth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

var t0 = time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)

func mustToken(t testing.TB) string {
	t.Helper()
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func entry(principal string, role Role, token string) Entry {
	return Entry{Principal: principal, Role: role, SHA256: Hash(token), Created: t0, Expires: t0.Add(90 * 24 * time.Hour)}
}

func TestNewTokenIsWellFormedAndUnique(t *testing.T) {
	a, b := mustToken(t), mustToken(t)
	if err := CheckToken(a); err != nil {
		t.Fatalf("CheckToken(%q) = %v", a, err)
	}
	if a == b {
		t.Fatal("two tokens are equal")
	}
	if len(Hash(a)) != 64 || Hash(a) == Hash(b) {
		t.Fatalf("Hash(%q) = %q", a, Hash(a))
	}
}

func TestParseBearer(t *testing.T) {
	tok := mustToken(t)
	tests := []struct {
		give    string
		want    string
		wantErr error
	}{
		{give: "Bearer " + tok, want: tok},
		{give: "bearer " + tok, want: tok},
		{give: "BEARER " + tok, want: tok},
		{give: "", wantErr: ErrNoCredentials},
		{give: "Bearer", wantErr: ErrMalformed},
		{give: "Bearer ", wantErr: ErrMalformed},
		{give: "Basic dXNlcjpwYXNz", wantErr: ErrMalformed},
		{give: "Bearer  " + tok, wantErr: ErrMalformed},
		{give: "Bearer " + tok + " ", wantErr: ErrMalformed},
		{give: "Bearer " + tok + "x", wantErr: ErrMalformed},
		{give: "Bearer " + tok[:len(tok)-1] + "=", wantErr: ErrMalformed},
		{give: "Bearer " + strings.Replace(tok, "lethe_", "LETHE_", 1), wantErr: ErrMalformed},
		{give: "Token " + tok, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		got, err := ParseBearer(tt.give)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("ParseBearer(%q) = %q, %v; want %q, %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseRejectsBadFiles(t *testing.T) {
	tok, tok2, tok3 := mustToken(t), mustToken(t), mustToken(t)
	good := entry("privacy:jdoe", RolePrivacy, tok).Line()
	tests := []struct {
		name, give, want string
	}{
		{"not JSON", "privacy:jdoe privacy " + Hash(tok), "line 3: malformed JSON"},
		{"unknown field", `{"principal":"privacy:jdoe","role":"privacy","sha256":"` + Hash(tok) + `","created":"2026-06-01T10:00:00Z","expires":"2026-09-01T10:00:00Z","token":"x"}`, `unknown field "token"`},
		{"two values", good + " {}", "more than one JSON value"},
		{"bad role", strings.Replace(good, `"privacy"`, `"root"`, 1), `role "root"`},
		{"e-mail principal", strings.Replace(good, "privacy:jdoe", "jdoe@example.org", 1), "principal"},
		{"short hash", strings.Replace(good, Hash(tok), Hash(tok)[:63], 1), "sha256 must be 64"},
		{"upper-case hash", strings.Replace(good, Hash(tok), strings.ToUpper(Hash(tok)), 1), "sha256 must be 64"},
		{"no expiry", strings.Replace(good, `,"expires":"2026-08-30T10:00:00Z"`, "", 1), "expires are required"},
		{"bad time", strings.Replace(good, "2026-06-01T10:00:00Z", "yesterday", 1), "RFC 3339"},
		{"expires before created", strings.Replace(good, "2026-08-30T10:00:00Z", "2026-05-01T10:00:00Z", 1), "expires must be after created"},
		{"account for privacy", strings.Replace(good, `"role":"privacy"`, `"role":"privacy","account":"acc-1"`, 1), "only a dashboard principal"},
		{"same hash twice", good + "\n" + strings.Replace(good, "privacy:jdoe", "privacy:kim", 1), "line 4: the same token hash as line 3"},
		{"two roles", good + "\n" + entry("privacy:jdoe", RoleSRE, tok2).Line(), "has role privacy"},
		{"three tokens", good + "\n" + entry("privacy:jdoe", RolePrivacy, tok2).Line() + "\n" + entry("privacy:jdoe", RolePrivacy, tok3).Line(), "more than 2 tokens"},
		{"wrong type", `{"principal":7}`, `field "principal" must be a string`},
		{"too long a line", strings.Repeat("x", 70<<10), "longer than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader("# comment\n\n" + tt.give + "\n"))
			if err == nil || !errors.Is(err, ErrInvalidFile) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() = %v, want an ErrInvalidFile containing %q", err, tt.want)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	live, old, dash := mustToken(t), mustToken(t), mustToken(t)
	expired := entry("sre:old", RoleSRE, old)
	expired.Expires = t0.Add(time.Hour)
	d := entry("dashboard:web", RoleDashboard, dash)
	d.Account = "acc-1"
	entries, err := Parse(strings.NewReader(entry("privacy:jdoe", RolePrivacy, live).Line() + "\n" + expired.Line() + "\n" + d.Line() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokens(entries)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Hour)
	if p, err := tokens.Authenticate(live, now); err != nil || p != (Principal{ID: "privacy:jdoe", Role: RolePrivacy}) {
		t.Errorf("live token: %+v, %v", p, err)
	}
	if p, err := tokens.Authenticate(dash, now); err != nil || p != (Principal{ID: "dashboard:web", Role: RoleDashboard, Account: "acc-1"}) {
		t.Errorf("dashboard token: %+v, %v", p, err)
	}
	if _, err := tokens.Authenticate(old, now); !errors.Is(err, ErrExpired) {
		t.Errorf("expired token: %v, want ErrExpired", err)
	}
	if _, err := tokens.Authenticate(mustToken(t), now); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("unknown token: %v, want ErrUnknownToken", err)
	}
	if _, err := tokens.Authenticate(Hash(live), now); !errors.Is(err, ErrMalformed) {
		t.Errorf("the hash as a token: %v, want ErrMalformed", err)
	}
	if _, err := tokens.Authenticate(live, t0.Add(90*24*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("at the expiry: %v, want ErrExpired", err)
	}
	if _, err := NewTokens(nil); !errors.Is(err, ErrInvalidFile) {
		t.Errorf("no entries: %v, want ErrInvalidFile", err)
	}
}

func TestIssueRotateRevoke(t *testing.T) {
	p := Principal{ID: "privacy:jdoe", Role: RolePrivacy}
	tok1, e1, err := Issue(nil, p, 30*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	entries := []Entry{e1}
	if _, _, err := Issue(entries, Principal{ID: "privacy:jdoe", Role: RoleSRE}, time.Hour, t0); err == nil || !strings.Contains(err.Error(), "already has role privacy") {
		t.Errorf("a second role: %v", err)
	}

	now := t0.Add(24 * time.Hour)
	tok2, entries, err := Rotate(entries, "privacy:jdoe", 30*24*time.Hour, 2*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokens(entries)
	if err != nil {
		t.Fatal(err)
	}
	// During the overlap both work; after it, only the new one.
	for _, tok := range []string{tok1, tok2} {
		if _, err := tokens.Authenticate(tok, now.Add(time.Hour)); err != nil {
			t.Errorf("during the overlap: %v", err)
		}
	}
	if _, err := tokens.Authenticate(tok1, now.Add(3*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("old token after the overlap: %v, want ErrExpired", err)
	}
	if _, err := tokens.Authenticate(tok2, now.Add(3*time.Hour)); err != nil {
		t.Errorf("new token after the overlap: %v", err)
	}
	if _, _, err := Rotate(entries, "privacy:jdoe", time.Hour, time.Hour, now.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "already holds 2 valid tokens") {
		t.Errorf("rotating during a rotation: %v", err)
	}
	// Once the old token expired, the next rotation drops it.
	_, later, err := Rotate(entries, "privacy:jdoe", time.Hour, 0, now.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(later) != 1 {
		t.Errorf("after a rotation with no overlap: %d entries, want 1", len(later))
	}
	if _, _, err := Rotate(entries, "sre:nobody", time.Hour, time.Hour, now); err == nil {
		t.Error("rotating an unknown principal: no error")
	}

	kept, n := Revoke(entries, "privacy:jdoe", Hash(tok1)[:12])
	if n != 1 || len(kept) != 1 || kept[0].SHA256 != Hash(tok2) {
		t.Errorf("revoke one: %d dropped, kept %+v", n, kept)
	}
	if kept, n := Revoke(entries, "privacy:jdoe", ""); n != 2 || len(kept) != 0 {
		t.Errorf("revoke all: %d dropped, kept %+v", n, kept)
	}
}

func TestStoreReloadsAndKeepsTheLastGoodTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-tokens.jsonl")
	tok1, tok2 := mustToken(t), mustToken(t)
	if err := WriteFile(path, []Entry{entry("privacy:jdoe", RolePrivacy, tok1)}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v, %v", st.Mode(), err)
	}
	s, err := OpenStore(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	if _, err := s.Authenticate(tok1, now); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err != nil {
		t.Errorf("reload of the same file: %v, %v", changed, err)
	}

	if err := WriteFile(path, []Entry{entry("sre:kim", RoleSRE, tok2)}); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("reload after a change: %v, %v", changed, err)
	}
	if _, err := s.Authenticate(tok1, now); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("revoked token: %v", err)
	}

	if err := os.WriteFile(path, []byte("{half a line"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil {
		t.Fatal("reload of a broken file: no error")
	}
	if p, err := s.Authenticate(tok2, now); err != nil || p.ID != "sre:kim" {
		t.Errorf("after a failed reload the last good tokens stay: %+v, %v", p, err)
	}

	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(path, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-writable file: %v", err)
	}
	if _, err := OpenStore("", zap.NewNop()); !errors.Is(err, ErrNoFile) {
		t.Errorf("no file: %v, want ErrNoFile", err)
	}
}

// FuzzParseBearer: any header either yields a well-formed token that is a
// suffix of the header, or an error; nothing panics.
func FuzzParseBearer(f *testing.F) {
	f.Add("Bearer lethe_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("bearer lethe_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer ")
	f.Add("Bearer lethe_\x00")
	f.Add("")
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := ParseBearer(header)
		if err != nil {
			if tok != "" {
				t.Fatalf("ParseBearer(%q) = %q with error %v", header, tok, err)
			}
			return
		}
		if CheckToken(tok) != nil || !strings.HasSuffix(header, " "+tok) || len(header) != len("Bearer ")+len(tok) {
			t.Fatalf("ParseBearer(%q) = %q", header, tok)
		}
	})
}

// FuzzParse: any tokens file parses to valid entries or an error wrapping
// ErrInvalidFile; nothing panics, and what parses writes back unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(FileHeader + `{"principal":"privacy:jdoe","role":"privacy","sha256":"` + strings.Repeat("a", 64) + `","created":"2026-06-01T10:00:00Z","expires":"2026-09-01T10:00:00Z"}` + "\n"))
	f.Add([]byte(`{"principal":"dashboard:web","role":"dashboard","account":"acc-1","sha256":"` + strings.Repeat("0", 64) + `","created":"2026-06-01T10:00:00+02:00","expires":"2027-06-01T10:00:00Z"}`))
	f.Add([]byte("# only a comment\n\n"))
	f.Add([]byte(`{"principal":"x","role":"sre","sha256":7}`))
	f.Add([]byte("{}\n[]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("error not wrapping ErrInvalidFile: %v", err)
			}
			return
		}
		var b strings.Builder
		for _, e := range entries {
			if err := e.Validate(); err != nil {
				t.Fatalf("parsed an invalid entry %+v: %v", e, err)
			}
			b.WriteString(e.Line() + "\n")
		}
		again, err := Parse(strings.NewReader(b.String()))
		if err != nil || len(again) != len(entries) {
			t.Fatalf("written entries do not parse again: %v", err)
		}
		for i := range again {
			if again[i].Line() != entries[i].Line() {
				t.Fatalf("entry %d changed in a round trip: %s != %s", i, again[i].Line(), entries[i].Line())
			}
		}
	})
}
