package apiauth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// Entry is one line of the tokens file: a token's hash and who it stands
// for.
type Entry struct {
	Principal string `json:"principal"`
	Role      Role   `json:"role"`
	// Account limits a dashboard principal to one account; empty: all.
	Account string `json:"account,omitempty"`
	// SHA256 is Hash(token).
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// MaxTokensPerPrincipal is how many tokens a principal may hold: its
// current one and, during a rotation, the next.
const MaxTokensPerPrincipal = 2

// MaxFileBytes bounds the tokens file.
const MaxFileBytes = 1 << 20

// ErrInvalidFile is wrapped by every error about the tokens file's
// content.
var ErrInvalidFile = errors.New("invalid api tokens file")

var hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Who returns the principal e stands for.
func (e Entry) Who() Principal { return Principal{ID: e.Principal, Role: e.Role, Account: e.Account} }

// Validate checks one entry on its own.
func (e Entry) Validate() error {
	if err := jobs.ValidatePrincipal(e.Principal); err != nil {
		return fmt.Errorf("principal %q: it must be an id of 1-128 letters, digits, '.', '_', ':', '/' or '-', such as privacy:jdoe", e.Principal)
	}
	if !e.Role.Valid() {
		return fmt.Errorf("role %q: want one of %s", e.Role, roleList())
	}
	if e.Account != "" {
		if e.Role != RoleDashboard {
			return fmt.Errorf("account is set for role %s: only a dashboard principal is limited to an account", e.Role)
		}
		if err := jobs.ValidateAccountID(e.Account); err != nil {
			return fmt.Errorf("account %q: an internal account id of 1-128 letters, digits, '.', '_', ':' or '-'", e.Account)
		}
	}
	if !hashPattern.MatchString(e.SHA256) {
		return errors.New("sha256 must be 64 lower-case hex digits: the SHA-256 of the token, as erasectl token issue writes it")
	}
	if e.Created.IsZero() || e.Expires.IsZero() {
		return errors.New("created and expires are required (RFC 3339 times)")
	}
	if !e.Expires.After(e.Created) {
		return errors.New("expires must be after created")
	}
	return nil
}

func roleList() string {
	var s []string
	for _, r := range Roles() {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

// Parse reads a tokens file: one JSON object (an Entry) a line; blank
// lines and lines starting with # are ignored. Unknown fields, a second
// value on a line, a hash listed twice, a principal with two roles or
// accounts, or more than MaxTokensPerPrincipal tokens for one principal
// are errors naming the line. Expired entries are kept: they are inert.
// Every error wraps ErrInvalidFile.
func Parse(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxFileBytes+1))
	sc.Buffer(make([]byte, 4096), 64<<10)
	var (
		out     []Entry
		size    int
		seen    = map[string]int{}
		holders = map[string][]int{}
	)
	line := 0
	for sc.Scan() {
		line++
		size += len(sc.Bytes()) + 1
		if size > MaxFileBytes {
			return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidFile, MaxFileBytes)
		}
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		e, err := parseLine(text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrInvalidFile, line, err)
		}
		if first, dup := seen[e.SHA256]; dup {
			return nil, fmt.Errorf("%w: line %d: the same token hash as line %d", ErrInvalidFile, line, first)
		}
		seen[e.SHA256] = line
		for _, i := range holders[e.Principal] {
			if o := out[i]; o.Role != e.Role || o.Account != e.Account {
				return nil, fmt.Errorf("%w: line %d: principal %s has role %s (account %q) on an earlier line: a principal has one role; use another principal id", ErrInvalidFile, line, e.Principal, o.Role, o.Account)
			}
		}
		if len(holders[e.Principal]) >= MaxTokensPerPrincipal {
			return nil, fmt.Errorf("%w: line %d: principal %s has more than %d tokens: revoke the old one (erasectl token revoke)", ErrInvalidFile, line, e.Principal, MaxTokensPerPrincipal)
		}
		holders[e.Principal] = append(holders[e.Principal], len(out))
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d is longer than 64 KiB", ErrInvalidFile, line+1)
		}
		return nil, fmt.Errorf("read api tokens: %w", err)
	}
	return out, nil
}

func parseLine(text []byte) (Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		var pe *time.ParseError
		switch {
		case errors.As(err, &se):
			return Entry{}, fmt.Errorf("malformed JSON at byte %d", se.Offset)
		case errors.As(err, &te):
			return Entry{}, fmt.Errorf("field %q must be a %s", te.Field, te.Type)
		case errors.As(err, &pe):
			return Entry{}, errors.New("created and expires must be RFC 3339 times such as 2026-06-01T10:00:00Z")
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return Entry{}, fmt.Errorf("unknown field %s (want principal, role, account, sha256, created, expires)", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return Entry{}, errors.New("not a JSON object")
		}
	}
	if dec.More() {
		return Entry{}, errors.New("more than one JSON value: one entry a line")
	}
	if err := e.Validate(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// ReadFile reads and parses the tokens file at path. It refuses a file
// that others than its owner may write: whoever can write it can grant
// themselves any role.
func ReadFile(path string) ([]Entry, error) {
	_, entries, err := readFile(path)
	return entries, err
}

// readFile is ReadFile that also returns the bytes it parsed.
func readFile(path string) ([]byte, []Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open api tokens file (set LETHE_API_TOKENS to a readable file): %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("stat api tokens file %s: %w", path, err)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, nil, fmt.Errorf("%w: %s may be written by group or others (mode %v): chmod 600 it", ErrInvalidFile, path, st.Mode().Perm())
	}
	raw, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read api tokens file %s: %w", path, err)
	}
	entries, err := Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("api tokens file %s: %w", path, err)
	}
	return raw, entries, nil
}

// FileHeader starts every tokens file WriteFile writes.
const FileHeader = `# Lethe API tokens: one JSON object a line, the SHA-256 of each token, never the token.
# Written by erasectl token (issue, rotate, revoke); the coordinator reads it (LETHE_API_TOKENS).
`

// Line is e as a line of the tokens file, without the newline.
func (e Entry) Line() string {
	e.Created = e.Created.UTC()
	e.Expires = e.Expires.UTC()
	b, _ := json.Marshal(e) // an Entry always encodes
	return string(b)
}

// WriteFile replaces the tokens file at path with entries, atomically (a
// temporary file renamed over it), mode 0600.
func WriteFile(path string, entries []Entry) error {
	var b strings.Builder
	b.WriteString(FileHeader)
	for _, e := range entries {
		b.WriteString(e.Line() + "\n")
	}
	if _, err := Parse(strings.NewReader(b.String())); err != nil {
		return fmt.Errorf("refuse to write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write api tokens file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write api tokens file %s: %w", path, err)
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("write api tokens file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write api tokens file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write api tokens file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write api tokens file %s: %w", path, err)
	}
	return nil
}

// Tokens finds principals by token. It is immutable once built.
type Tokens struct {
	byHash map[string]Entry
}

// NewTokens indexes entries (as Parse returns them).
func NewTokens(entries []Entry) (*Tokens, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: it lists no token, so no one could call the API: issue one with erasectl token issue", ErrInvalidFile)
	}
	t := &Tokens{byHash: make(map[string]Entry, len(entries))}
	for _, e := range entries {
		t.byHash[e.SHA256] = e
	}
	return t, nil
}

// LoadTokens reads the tokens file at path (ReadFile) and indexes it.
func LoadTokens(path string) (*Tokens, error) {
	_, t, err := loadTokens(path)
	return t, err
}

// ErrNoFile: no tokens file was named.
var ErrNoFile = errors.New("no api tokens file: set LETHE_API_TOKENS (-api-tokens) to the tokens file; erasectl token issue makes one (docs/security.md); the API has no anonymous access")

func loadTokens(path string) ([]byte, *Tokens, error) {
	if path == "" {
		return nil, nil, ErrNoFile
	}
	raw, entries, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	t, err := NewTokens(entries)
	if err != nil {
		return nil, nil, fmt.Errorf("api tokens file %s: %w", path, err)
	}
	return raw, t, nil
}

// Len is the number of tokens, expired ones included.
func (t *Tokens) Len() int { return len(t.byHash) }

// Authenticate returns the principal of token at now. It returns an
// error wrapping ErrMalformed, ErrUnknownToken or ErrExpired otherwise.
// The lookup is by the token's hash: how long it takes tells nothing about
// any token, since finding a token from its hash is not feasible.
func (t *Tokens) Authenticate(token string, now time.Time) (Principal, error) {
	if err := CheckToken(token); err != nil {
		return Principal{}, err
	}
	e, ok := t.byHash[Hash(token)]
	if !ok {
		return Principal{}, ErrUnknownToken
	}
	if !now.Before(e.Expires) {
		return Principal{}, fmt.Errorf("%w on %s", ErrExpired, e.Expires.UTC().Format(time.RFC3339))
	}
	return e.Who(), nil
}

// Issue makes a token for a principal and the entry that lets it in, valid
// from now for ttl. It checks the entry against entries (the file's
// current content): the principal must not hold another role or account,
// nor MaxTokensPerPrincipal unexpired tokens already.
func Issue(entries []Entry, p Principal, ttl time.Duration, now time.Time) (string, Entry, error) {
	if ttl <= 0 {
		return "", Entry{}, errors.New("the token's lifetime must be positive")
	}
	token, err := NewToken()
	if err != nil {
		return "", Entry{}, err
	}
	now = now.UTC().Truncate(time.Second)
	e := Entry{Principal: p.ID, Role: p.Role, Account: p.Account, SHA256: Hash(token), Created: now, Expires: now.Add(ttl)}
	if err := e.Validate(); err != nil {
		return "", Entry{}, err
	}
	live := 0
	for _, o := range entries {
		if o.Principal != p.ID {
			continue
		}
		if o.Role != p.Role || o.Account != p.Account {
			return "", Entry{}, fmt.Errorf("principal %s already has role %s (account %q): a principal has one role; revoke it first or use another id", p.ID, o.Role, o.Account)
		}
		if now.Before(o.Expires) {
			live++
		}
	}
	if live >= MaxTokensPerPrincipal {
		return "", Entry{}, fmt.Errorf("principal %s already holds %d valid tokens: revoke one first (erasectl token revoke)", p.ID, live)
	}
	return token, e, nil
}

// Rotate makes the next token of principal id: a new entry with the same
// role and account, valid for ttl; the principal's token that is still
// valid keeps working for overlap at most (so that its clients can
// switch), and its expired entries are dropped. It returns the new token
// and the entries to write. A principal that holds two valid tokens is in
// a rotation already: revoke one first.
func Rotate(entries []Entry, id string, ttl, overlap time.Duration, now time.Time) (string, []Entry, error) {
	if overlap < 0 {
		return "", nil, errors.New("the overlap must not be negative")
	}
	now = now.UTC().Truncate(time.Second)
	var (
		kept  []Entry
		who   Principal
		found bool
	)
	for _, e := range entries {
		if e.Principal != id {
			kept = append(kept, e)
			continue
		}
		if end := now.Add(overlap); end.Before(e.Expires) {
			e.Expires = end
		}
		if !now.Before(e.Expires) || !e.Expires.After(e.Created) {
			continue // expired, or ends now: dropped
		}
		who, found = e.Who(), true
		kept = append(kept, e)
	}
	if !found {
		for _, e := range entries {
			if e.Principal == id {
				who, found = e.Who(), true
			}
		}
	}
	if !found {
		return "", nil, fmt.Errorf("principal %s is not in the tokens file: issue its first token (erasectl token issue)", id)
	}
	token, e, err := Issue(kept, who, ttl, now)
	if err != nil {
		return "", nil, err
	}
	return token, append(kept, e), nil
}

// Revoke drops the entries of principal id whose hash starts with
// hashPrefix (every one of its entries when hashPrefix is empty). It
// returns the entries to write and how many were dropped.
func Revoke(entries []Entry, id, hashPrefix string) ([]Entry, int) {
	var kept []Entry
	n := 0
	for _, e := range entries {
		if e.Principal == id && strings.HasPrefix(e.SHA256, hashPrefix) {
			n++
			continue
		}
		kept = append(kept, e)
	}
	return kept, n
}
