package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
)

var tokenSpec = commandSpec{
	name:    "token",
	summary: "issue, rotate, revoke and list the HTTP API's bearer tokens",
	usage: "token issue --principal ID --role ROLE [--account ACCOUNT] [--ttl 90d] [--file FILE] [--token-out FILE]\n" +
		"       erasectl token rotate --principal ID [--overlap 24h] [--ttl 90d] [--file FILE] [--token-out FILE]\n" +
		"       erasectl token revoke --principal ID [--sha256 PREFIX] [--file FILE]\n" +
		"       erasectl token list [--file FILE]\n" +
		"       erasectl token init --dir DIR [--name NAME] [--ttl 30d]",
	description: `
Edits the coordinator's tokens file (--file, default $LETHE_API_TOKENS): one
JSON line per token with its SHA-256, never the token itself, the principal
it stands for and its role (dashboard, privacy, sre, auditor, metrics). The
coordinator reads the file again every 30 s: changes need no restart.

  issue   makes a token (256 random bits) for a principal and adds its line
          to the file; without a file it prints the line to add. The token
          is printed once, on stdout (or written to --token-out, mode 0600):
          hand it over through a secret store. A dashboard token may be
          limited to one --account.
  rotate  makes the principal's next token; its current one keeps working
          for --overlap (default 24h) so that its clients can switch, then
          expires. A principal holds two tokens at most.
  revoke  removes the principal's tokens (or the one whose hash starts with
          --sha256) at once.
  list    shows the file's entries: principal, role, hash prefix, expiry.
  init    for a development set-up: one token per role (principal
          ROLE:NAME) in DIR/api-tokens.jsonl and DIR/ROLE.token; tokens
          still valid for a day are kept (scripts/demo, docker-compose.yml).

See docs/security.md for what each role may do.`,
	examples: `  erasectl token issue --principal privacy:jdoe --role privacy --file /etc/lethe/api-tokens.jsonl
  erasectl token issue --principal dashboard:web --role dashboard --ttl 365d --token-out dashboard.token
  erasectl token rotate --principal privacy:jdoe --overlap 2h
  erasectl token revoke --principal privacy:jdoe
  erasectl token list -o json
  erasectl token init --dir .lethe/secrets/api --name demo`,
	new: func() command {
		return &tokenCmd{ttl: 90 * 24 * time.Hour, overlap: 24 * time.Hour, name: "dev"}
	},
}

// Lifetimes of tokens: init's default, and the longest any may have.
const (
	initTokenTTL = 30 * 24 * time.Hour
	maxTokenTTL  = 366 * 24 * time.Hour
)

type tokenCmd struct {
	action    string
	principal string
	role      string
	account   string
	ttl       time.Duration
	ttlSet    bool
	overlap   time.Duration
	file      string
	tokenOut  string
	hashPfx   string
	dir       string
	name      string
	now       func() time.Time
}

func (c *tokenCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.principal, "principal", c.principal, "the principal `ID`, such as privacy:jdoe: who the audit trail names")
	fs.StringVar(&c.role, "role", c.role, "issue: the `ROLE`: dashboard, privacy, sre, auditor or metrics")
	fs.StringVar(&c.account, "account", c.account, "issue: limit a dashboard token to this `ACCOUNT`")
	fs.Var(daysFlag{&c.ttl, &c.ttlSet}, "ttl", "how long the token is valid: `DAYS` like 90d, or a duration like 12h (at most 366d)")
	fs.DurationVar(&c.overlap, "overlap", c.overlap, "rotate: how long the current token keeps working")
	fs.StringVar(&c.file, "file", c.file, "the coordinator's tokens `FILE` (default $"+EnvAPITokens+")")
	fs.StringVar(&c.tokenOut, "token-out", c.tokenOut, "write the new token to `FILE` (mode 0600) instead of stdout")
	fs.StringVar(&c.hashPfx, "sha256", c.hashPfx, "revoke: only the token whose hash starts with this `PREFIX` (8 hex digits or more)")
	fs.StringVar(&c.dir, "dir", c.dir, "init: the `DIR`ectory of the tokens file and the role tokens")
	fs.StringVar(&c.name, "name", c.name, "init: the principals are ROLE:`NAME`")
}

// daysFlag is a duration flag that also takes whole days ("90d").
type daysFlag struct {
	d   *time.Duration
	set *bool
}

func (f daysFlag) String() string {
	if f.d == nil {
		return ""
	}
	if *f.d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(*f.d/(24*time.Hour))) + "d"
	}
	return f.d.String()
}

func (f daysFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	}
	if err != nil || d <= 0 {
		return errors.New("want whole days like 90d, or a duration like 12h")
	}
	*f.d, *f.set = d, true
	return nil
}

func (c *tokenCmd) args(pos []string) error {
	if len(pos) != 1 {
		return errors.New("want one action: issue, rotate, revoke, list or init")
	}
	c.action = pos[0]
	if c.ttl > maxTokenTTL {
		return errors.New("--ttl must be at most 366d: a token that lives longer is never rotated")
	}
	needPrincipal := func() error {
		if c.principal == "" {
			return errors.New("--principal is required")
		}
		return nil
	}
	switch c.action {
	case "issue":
		if err := needPrincipal(); err != nil {
			return err
		}
		if !apiauth.Role(c.role).Valid() {
			return fmt.Errorf("--role must be one of dashboard, privacy, sre, auditor, metrics (got %q)", c.role)
		}
	case "rotate":
		if c.overlap < 0 {
			return errors.New("--overlap must not be negative")
		}
		return needPrincipal()
	case "revoke":
		if c.hashPfx != "" && len(c.hashPfx) < 8 {
			return errors.New("--sha256 needs 8 hex digits or more, as token list shows them")
		}
		return needPrincipal()
	case "list":
	case "init":
		if c.dir == "" {
			return errors.New("--dir is required")
		}
		if !c.ttlSet {
			c.ttl = initTokenTTL
		}
	default:
		return fmt.Errorf("unknown action %q: want issue, rotate, revoke, list or init", c.action)
	}
	return nil
}

func (c *tokenCmd) run(_ context.Context, p *program) error {
	if c.now == nil {
		c.now = time.Now
	}
	file := cmp.Or(c.file, p.cfg.apiTokensFile)
	switch c.action {
	case "init":
		return c.init(p)
	case "issue":
		return c.issue(p, file)
	}
	if file == "" {
		return usageErrorf("token %s: --file (or %s) names no tokens file", c.action, EnvAPITokens)
	}
	entries, err := apiauth.ReadFile(file)
	if err != nil {
		return err
	}
	switch c.action {
	case "rotate":
		token, next, err := apiauth.Rotate(entries, c.principal, c.ttl, c.overlap, c.now())
		if err != nil {
			return err
		}
		if err := apiauth.WriteFile(file, next); err != nil {
			return err
		}
		e := next[len(next)-1]
		fmt.Fprintf(p.stderr, "rotated %s: its previous token works until %s at the latest; the coordinator reads %s within 30 s\n",
			c.principal, c.now().Add(c.overlap).UTC().Format(time.RFC3339), file)
		return c.handOver(p, token, e, file)
	case "revoke":
		kept, n := apiauth.Revoke(entries, c.principal, c.hashPfx)
		if n == 0 {
			return withCode(ExitNotFound, fmt.Errorf("%s has no token in %s (erasectl token list shows them)", c.principal, file))
		}
		if err := apiauth.WriteFile(file, kept); err != nil {
			return err
		}
		fmt.Fprintf(p.stderr, "revoked %d token(s) of %s; the coordinator refuses them within 30 s\n", n, c.principal)
		return nil
	default: // list
		return c.list(p, entries)
	}
}

// issue makes a token and adds its line to file, or prints the line.
func (c *tokenCmd) issue(p *program, file string) error {
	var entries []apiauth.Entry
	if file != "" {
		var err error
		entries, err = apiauth.ReadFile(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			entries = nil // a new file
		case err != nil:
			return err
		}
	}
	token, e, err := apiauth.Issue(entries, apiauth.Principal{ID: c.principal, Role: apiauth.Role(c.role), Account: c.account}, c.ttl, c.now())
	if err != nil {
		return withCode(ExitUsage, err)
	}
	if file == "" {
		fmt.Fprintf(p.stderr, "add this line to the coordinator's tokens file (%s):\n%s\n", EnvAPITokens, e.Line())
	} else {
		if err := apiauth.WriteFile(file, append(entries, e)); err != nil {
			return err
		}
		fmt.Fprintf(p.stderr, "added %s (role %s) to %s; the coordinator reads it within 30 s\n", e.Principal, e.Role, file)
	}
	return c.handOver(p, token, e, file)
}

// handOver shows the new token once: on stdout, or in --token-out.
func (c *tokenCmd) handOver(p *program, token string, e apiauth.Entry, file string) error {
	if c.tokenOut != "" {
		if err := writeSecret(c.tokenOut, token); err != nil {
			return err
		}
		token = ""
		fmt.Fprintf(p.stderr, "the token is in %s (mode 0600), valid until %s\n", c.tokenOut, e.Expires.UTC().Format(time.RFC3339))
	} else if !p.cfg.json() {
		fmt.Fprintf(p.stderr, "the token, valid until %s, is shown once; keep it in a secret store:\n", e.Expires.UTC().Format(time.RFC3339))
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, tokenView{Principal: e.Principal, Role: string(e.Role), Account: e.Account, SHA256: e.SHA256,
			Created: e.Created, Expires: e.Expires, Token: token, TokenFile: c.tokenOut, File: file})
	}
	if token != "" {
		fmt.Fprintln(p.stdout, token)
	}
	return nil
}

// tokenView is a token entry as token commands print it with -o json.
type tokenView struct {
	Principal string    `json:"principal"`
	Role      string    `json:"role"`
	Account   string    `json:"account,omitempty"`
	SHA256    string    `json:"sha256"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	State     string    `json:"state,omitempty"`
	Token     string    `json:"token,omitempty"`
	TokenFile string    `json:"token_file,omitempty"`
	File      string    `json:"file,omitempty"`
}

func (c *tokenCmd) list(p *program, entries []apiauth.Entry) error {
	now := c.now()
	views := make([]tokenView, 0, len(entries))
	for _, e := range entries {
		state := "valid"
		if !now.Before(e.Expires) {
			state = "expired"
		}
		views = append(views, tokenView{Principal: e.Principal, Role: string(e.Role), Account: e.Account, SHA256: e.SHA256, Created: e.Created, Expires: e.Expires, State: state})
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, views)
	}
	t := newTable("PRINCIPAL", "ROLE", "ACCOUNT", "SHA256", "CREATED", "EXPIRES", "STATE")
	for _, v := range views {
		t.add(v.Principal, v.Role, v.Account, v.SHA256[:12], v.Created.UTC().Format(time.RFC3339), v.Expires.UTC().Format(time.RFC3339), v.State)
	}
	return t.write(p.stdout)
}

// init makes one token per role in dir for a development set-up, keeping
// the tokens that stay valid for another day.
func (c *tokenCmd) init(p *program) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.dir, err)
	}
	file := filepath.Join(c.dir, "api-tokens.jsonl")
	entries, err := apiauth.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (delete %s to start afresh)", err, c.dir)
	}
	now := c.now()
	t := newTable("ROLE", "PRINCIPAL", "TOKEN FILE", "EXPIRES", "STATE")
	var views []tokenView
	for _, role := range apiauth.Roles() {
		principal := string(role) + ":" + c.name
		tokenFile := filepath.Join(c.dir, string(role)+".token")
		if e, ok := keptToken(entries, principal, tokenFile, now.Add(24*time.Hour)); ok {
			t.add(string(role), principal, tokenFile, e.Expires.UTC().Format(time.RFC3339), "kept")
			views = append(views, tokenView{Principal: principal, Role: string(role), SHA256: e.SHA256, Created: e.Created, Expires: e.Expires, State: "kept", TokenFile: tokenFile, File: file})
			continue
		}
		entries, _ = apiauth.Revoke(entries, principal, "")
		token, e, err := apiauth.Issue(entries, apiauth.Principal{ID: principal, Role: role}, c.ttl, now)
		if err != nil {
			return err
		}
		if err := writeSecret(tokenFile, token); err != nil {
			return err
		}
		entries = append(entries, e)
		t.add(string(role), principal, tokenFile, e.Expires.UTC().Format(time.RFC3339), "new")
		views = append(views, tokenView{Principal: principal, Role: string(role), SHA256: e.SHA256, Created: e.Created, Expires: e.Expires, State: "new", TokenFile: tokenFile, File: file})
	}
	if err := apiauth.WriteFile(file, entries); err != nil {
		return err
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, views)
	}
	fmt.Fprintf(p.stderr, "tokens file %s (LETHE_API_TOKENS for the coordinator); erasectl reads a token with LETHE_API_TOKEN_FILE=DIR/ROLE.token\n", file)
	return t.write(p.stdout)
}

// keptToken reports whether tokenFile holds the token of one of
// principal's entries that is valid until after until.
func keptToken(entries []apiauth.Entry, principal, tokenFile string, until time.Time) (apiauth.Entry, bool) {
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		return apiauth.Entry{}, false
	}
	hash := apiauth.Hash(strings.TrimSpace(string(raw)))
	for _, e := range entries {
		if e.Principal == principal && e.SHA256 == hash && until.Before(e.Expires) {
			return e, true
		}
	}
	return apiauth.Entry{}, false
}

// writeSecret writes a token to path, mode 0600, replacing what was
// there.
func writeSecret(path, token string) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // a left-over could have another mode
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write the token: %w", err)
	}
	return nil
}
