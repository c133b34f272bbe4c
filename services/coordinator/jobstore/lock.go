package jobstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLocked is returned by TryLock when another holder has the lock.
var ErrLocked = errors.New("lock is held by another process")

// Lock is a named lock in Redis, held until Release or until its TTL runs
// out without a Refresh: a holder that crashed frees it by itself.
type Lock struct {
	rdb   redis.UniversalClient
	key   string
	token string
	ttl   time.Duration
}

// TryLock takes the lock name for ttl, or returns ErrLocked when another
// process holds it. Locks live under the store's prefix ("lock:<name>").
func (s *Store) TryLock(ctx context.Context, name string, ttl time.Duration) (*Lock, error) {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the process instead
	token := hex.EncodeToString(b)
	key := s.prefix + "lock:" + name
	ok, err := s.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return nil, fmt.Errorf("take lock %s: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("take lock %s: %w", name, ErrLocked)
	}
	return &Lock{rdb: s.rdb, key: key, token: token, ttl: ttl}, nil
}

var refreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Refresh extends the lock by its TTL. It returns an error wrapping
// ErrLocked when the lock was lost (it expired and another process took
// it, or Redis lost it).
func (l *Lock) Refresh(ctx context.Context) error {
	n, err := refreshScript.Run(ctx, l.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("refresh lock %s: %w", l.key, err)
	}
	if n == 0 {
		return fmt.Errorf("refresh lock %s: lost it: %w", l.key, ErrLocked)
	}
	return nil
}

// Release frees the lock if this holder still has it.
func (l *Lock) Release(ctx context.Context) error {
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.token).Err(); err != nil {
		return fmt.Errorf("release lock %s: %w", l.key, err)
	}
	return nil
}
