// Package lease elects the one coordinator replica that runs the scheduler:
// a Redis key held for a TTL and renewed by its holder, with a fencing token
// that grows with every new holder. A holder that pauses past the TTL loses
// the lease; the token lets what it does afterwards be refused where it
// matters (the dispatcher turns it into a fence message in the tasks
// stream, see package dispatch).
package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLost means the lease expired or another holder took it.
var ErrLost = errors.New("lease lost")

// Lease is one replica's handle on a named lease.
type Lease struct {
	rdb    redis.UniversalClient
	key    string
	epoch  string
	holder string
	ttl    time.Duration
}

// New returns a handle for holder (a unique id of this replica) on the
// lease name under prefix. ttl is how long a holder that stops renewing
// keeps it: the longest a failed leader's scheduling stops.
func New(rdb redis.UniversalClient, prefix, name, holder string, ttl time.Duration) *Lease {
	return &Lease{rdb: rdb, key: prefix + "lease:" + name, epoch: prefix + "lease:" + name + ":epoch", holder: holder, ttl: ttl}
}

// TTL is the lease's time to live.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Holder is this handle's holder id.
func (l *Lease) Holder() string { return l.holder }

// acquire takes a free lease with a new token, or renews one this holder
// already has (keeping its token). It returns the token, or 0 and the
// current holder.
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if string.sub(cur, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(string.sub(cur, 1, sep - 1)), ARGV[1]}
  end
  return {0, string.sub(cur, sep + 1)}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
return {token, ARGV[1]}
`)

var renewScript = redis.NewScript(`
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

// TryAcquire takes the lease if it is free (or already this holder's). It
// returns the fencing token and true, or 0, false and the current holder.
func (l *Lease) TryAcquire(ctx context.Context) (token int64, ok bool, holder string, err error) {
	res, err := acquireScript.Run(ctx, l.rdb, []string{l.key, l.epoch}, l.holder, l.ttl.Milliseconds()).Slice()
	if err != nil {
		return 0, false, "", fmt.Errorf("acquire lease %s: %w", l.key, err)
	}
	if len(res) != 2 {
		return 0, false, "", fmt.Errorf("acquire lease %s: unexpected reply %v", l.key, res)
	}
	tok, _ := res[0].(int64)
	h, _ := res[1].(string)
	return tok, tok > 0, h, nil
}

// Renew extends the lease held with token by its TTL, or returns an error
// wrapping ErrLost.
func (l *Lease) Renew(ctx context.Context, token int64) error {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.key}, l.value(token), l.ttl.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.key, err)
	}
	if n == 0 {
		return fmt.Errorf("renew lease %s: %w", l.key, ErrLost)
	}
	return nil
}

// Release gives the lease up if token still holds it, so that another
// replica takes over at once rather than after the TTL.
func (l *Lease) Release(ctx context.Context, token int64) error {
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.value(token)).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

func (l *Lease) value(token int64) string {
	return strconv.FormatInt(token, 10) + "|" + l.holder
}

// ParseValue splits a stored lease value into token and holder.
func ParseValue(v string) (int64, string, error) {
	t, h, ok := strings.Cut(v, "|")
	if !ok {
		return 0, "", fmt.Errorf("malformed lease value %q", v)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("malformed lease token in %q", v)
	}
	return n, h, nil
}
