package audit

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/lethe-privacy/lethe/services/coordinator/keyfile"
)

// KeySize is the length of an audit key: 32 random bytes.
const KeySize = 32

// keyIDLen is the length of a key id: 16 hex digits.
const keyIDLen = 16

// Key is a secret audit key with its public id. Its printed forms show the
// id only.
type Key struct {
	id     string
	secret []byte
}

// NewKey returns the key of secret, which must be KeySize bytes.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("%w: an audit key is %d bytes, got %d", ErrBadKey, KeySize, len(secret))
	}
	return &Key{id: keyID(secret), secret: bytes.Clone(secret)}, nil
}

// GenerateKey returns a new random key.
func GenerateKey() (*Key, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate audit key: %w", err)
	}
	return NewKey(b)
}

// ID names the key in the Lethe-Audit-Key header: the first 16 hex digits
// of a SHA-256 of the key, so that a rotation shows in the trail without
// revealing the key.
func (k *Key) ID() string { return k.id }

// String shows the id, never the secret.
func (k *Key) String() string { return "audit key " + k.id }

// GoString shows the id, never the secret.
func (k *Key) GoString() string { return k.String() }

func keyID(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("lethe-audit-key-id-v1\x00"))
	h.Write(secret)
	return hex.EncodeToString(h.Sum(nil))[:keyIDLen]
}

func validKeyID(s string) bool { return len(s) == keyIDLen && lowerHex(s) }

// KeyRing is the keys a coordinator or an auditor holds: the first signs
// new entries, all of them verify (the older ones sign the trail's older
// entries after a rotation).
type KeyRing struct {
	keys []*Key
	byID map[string]*Key
}

// NewKeyRing returns a ring whose first key signs. It needs at least one key.
func NewKeyRing(keys ...*Key) (*KeyRing, error) {
	if len(keys) == 0 || keys[0] == nil {
		return nil, fmt.Errorf("%w: no key", ErrBadKey)
	}
	r := &KeyRing{byID: make(map[string]*Key, len(keys))}
	for _, k := range keys {
		if k == nil {
			return nil, fmt.Errorf("%w: nil key", ErrBadKey)
		}
		if _, dup := r.byID[k.id]; dup {
			continue
		}
		r.keys = append(r.keys, k)
		r.byID[k.id] = k
	}
	return r, nil
}

// Signing is the key new entries are signed with.
func (r *KeyRing) Signing() *Key { return r.keys[0] }

// Lookup returns the key with id, or nil.
func (r *KeyRing) Lookup(id string) *Key { return r.byID[id] }

// IDs lists the ids of the ring's keys, the signing key first.
func (r *KeyRing) IDs() []string {
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.id
	}
	return out
}

// ParseKeys reads a key file: one key a line, 64 hex digits (what `openssl
// rand -hex 32` prints); blank lines and lines starting with # are
// skipped. The first key signs, the others only verify. Errors name the
// line, never its content.
func ParseKeys(b []byte) (*KeyRing, error) {
	var keys []*Key
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) != 2*KeySize {
			return nil, fmt.Errorf("%w: line %d is not %d hex digits (one key a line; create one with 'openssl rand -hex %d')", ErrBadKey, n, 2*KeySize, KeySize)
		}
		secret, err := hex.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d is not hex", ErrBadKey, n)
		}
		k, err := NewKey(secret)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: the file holds no key", ErrBadKey)
	}
	return NewKeyRing(keys...)
}

// LoadKeys reads the key file at path (see ParseKeys). A missing file is
// an error wrapping ErrNoKey.
func LoadKeys(path string) (*KeyRing, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read audit key file: %w", err)
	}
	r, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("audit key file %s: %w", path, err)
	}
	return r, nil
}

// LoadOrCreateKeys reads the key file at path or, when there is none,
// creates one with a new random key (mode 0600, its directory 0700) and
// reports created. It is for development: in production the operator
// issues the key and a missing file must stop the coordinator (LoadKeys).
// Two processes creating the file at once end up with the same key: it is
// created exclusively and the loser reads the winner's.
func LoadOrCreateKeys(path string) (ring *KeyRing, created bool, err error) {
	ring, err = LoadKeys(path)
	if !errors.Is(err, ErrNoKey) {
		return ring, false, err
	}
	k, err := GenerateKey()
	if err != nil {
		return nil, false, err
	}
	data := fmt.Sprintf("# Lethe audit key %s (development; created by the coordinator). One key a line: the first signs, all verify.\n%s\n", k.id, hex.EncodeToString(k.secret))
	// Two coordinators starting together must not see each other's file
	// half-written (a key file with no key stops start-up).
	made, err := keyfile.Create(path, []byte(data))
	if err != nil {
		return nil, false, fmt.Errorf("create audit key file: %w", err)
	}
	if !made {
		ring, err = LoadKeys(path)
		return ring, false, err
	}
	ring, err = NewKeyRing(k)
	return ring, true, err
}
