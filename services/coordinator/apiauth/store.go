package apiauth

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Store serves the tokens of a file and follows its changes: Reload reads
// it again, and Run does so every interval, so that an issued, rotated or
// revoked token takes effect on every coordinator without a restart. A
// file that became unreadable or invalid leaves the last good tokens in
// force (and is logged): a half-written edit must not lock everyone out.
type Store struct {
	path string
	log  *zap.Logger

	mu     sync.RWMutex
	tokens *Tokens
	sum    [sha256.Size]byte
}

// OpenStore loads the tokens file at path; its error says what to fix.
func OpenStore(path string, log *zap.Logger) (*Store, error) {
	s := &Store{path: path, log: log}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Len is the number of tokens in force, expired ones included.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tokens.Len()
}

// Authenticate is Tokens.Authenticate over the tokens in force.
func (s *Store) Authenticate(token string, now time.Time) (Principal, error) {
	s.mu.RLock()
	t := s.tokens
	s.mu.RUnlock()
	return t.Authenticate(token, now)
}

// Reload reads the file again and puts its tokens in force when it
// changed. It reports whether they changed; on error the tokens in force
// stay.
func (s *Store) Reload() (bool, error) {
	raw, t, err := loadTokens(s.path)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens != nil && sum == s.sum {
		return false, nil
	}
	s.tokens, s.sum = t, sum
	return true, nil
}

// Run reloads the file every interval until ctx ends, logging changes and
// failures. It returns nil when ctx ends.
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		changed, err := s.Reload()
		switch {
		case err != nil:
			s.log.Error("api tokens file not reloaded; the tokens loaded before stay in force", zap.String("path", s.path), zap.Error(err))
		case changed:
			s.log.Info("api tokens reloaded", zap.String("path", s.path), zap.Int("tokens", s.Len()))
		}
	}
}
