// Package apiauth says who may call the coordinator's HTTP API: bearer
// tokens, the tokens file that holds their SHA-256 hashes (never the
// tokens), the principal and role each token stands for, and the parsing
// of the Authorization header.
//
// A token is "lethe_" followed by 32 random bytes in unpadded base64url:
// 256 bits of entropy. The file keeps a fast hash of it, not bcrypt or
// argon2: those slow hashes exist to make guessing a low-entropy password
// expensive, and no one guesses a 256-bit random value, however fast the
// hash. A fast hash keeps each request's cost at a microsecond and lets the
// coordinator find a token by its hash (a map lookup) instead of trying
// every entry with a deliberately slow function, which would also make the
// API easy to overload with bad tokens.
//
// What the roles may do is decided by the HTTP layer (package httpapi's
// route table); this package only names them.
package apiauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Role is what a principal may do; httpapi maps each route to the roles
// allowed on it.
type Role string

// The roles. A principal has exactly one.
const (
	// RoleDashboard is the customer dashboard: it requests standard
	// erasures (with the grace period), cancels them during the grace
	// period and reads them, and nothing else.
	RoleDashboard Role = "dashboard"
	// RolePrivacy is the privacy team: everything about erasures.
	RolePrivacy Role = "privacy"
	// RoleSRE operates the pipeline: status, replays, dead letters,
	// reconciliation, rebuild, metrics; never creates, forces or cancels.
	RoleSRE Role = "sre"
	// RoleAuditor reads: jobs, certificates, the audit verification.
	RoleAuditor Role = "auditor"
	// RoleMetrics is a metrics scraper: GET /metrics only.
	RoleMetrics Role = "metrics"
)

// Roles lists every role, in the order tables show them.
func Roles() []Role { return []Role{RoleDashboard, RolePrivacy, RoleSRE, RoleAuditor, RoleMetrics} }

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	switch r {
	case RoleDashboard, RolePrivacy, RoleSRE, RoleAuditor, RoleMetrics:
		return true
	}
	return false
}

// Principal is who a token stands for.
type Principal struct {
	// ID names the principal in the audit trail ("privacy:jdoe"); it
	// becomes requested_by and the actor of everything it does.
	ID   string
	Role Role
	// Account, for a dashboard principal, limits it to one account's
	// erasures (a credential handed to one customer's session). Empty:
	// every account.
	Account string
}

// TokenPrefix starts every token, so that secret scanners and people
// recognise one.
const TokenPrefix = "lethe_"

// tokenBytes is the entropy of a token.
const tokenBytes = 32

// tokenLen is the length of a token: the prefix and 43 base64url digits.
var tokenLen = len(TokenPrefix) + base64.RawURLEncoding.EncodedLen(tokenBytes)

// Errors of token parsing and authentication.
var (
	// ErrNoCredentials: the request carries no Authorization header.
	ErrNoCredentials = errors.New("no credentials")
	// ErrMalformed: the header or token is not of the form "Bearer lethe_…".
	ErrMalformed = errors.New("malformed credentials")
	// ErrUnknownToken: no principal holds the token (never issued, or
	// revoked).
	ErrUnknownToken = errors.New("unknown token")
	// ErrExpired: the token was valid until its expiry.
	ErrExpired = errors.New("token expired")
)

// NewToken returns a new random token.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes for a token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckToken reports whether token has the form of a token (it may still
// be unknown). The error wraps ErrMalformed.
func CheckToken(token string) error {
	if len(token) != tokenLen || !strings.HasPrefix(token, TokenPrefix) {
		return fmt.Errorf("%w: a token is %q and %d base64url characters", ErrMalformed, TokenPrefix, tokenLen-len(TokenPrefix))
	}
	for _, c := range token[len(TokenPrefix):] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: a token holds base64url characters only", ErrMalformed)
		}
	}
	return nil
}

// Hash is the form a token is kept in: its SHA-256, in lower-case hex.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ParseBearer returns the token of an Authorization header value,
// "Bearer <token>" (the scheme in any case, RFC 7235). It returns an
// error wrapping ErrNoCredentials for an empty header and ErrMalformed for
// anything but one well-formed token.
func ParseBearer(header string) (string, error) {
	if header == "" {
		return "", ErrNoCredentials
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: send the header \"Authorization: Bearer <token>\"", ErrMalformed)
	}
	if err := CheckToken(token); err != nil {
		return "", err
	}
	return token, nil
}

// principalKey is the context key of the authenticated principal.
type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
