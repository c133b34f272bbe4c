// Package redisconn opens the Redis client the coordinator (and any other
// Lethe process that keeps state in Redis) uses, from one set of options:
// a single server by URL, or a primary found through Sentinel, each with
// optional ACL credentials and TLS. Keeping it in one place means every
// process fails over and authenticates the same way.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/lib/tlsfiles"
)

// Options say how to reach Redis. With SentinelAddrs empty, URL names the
// server (redis:// or rediss://, with user:password for an ACL user and a
// /db suffix). With SentinelAddrs set, the primary of MasterName is asked
// of the sentinels and followed across failovers; URL then still supplies
// the credentials, the database and the scheme (rediss:// turns TLS on).
type Options struct {
	URL              string
	SentinelAddrs    []string
	MasterName       string
	SentinelUsername string
	SentinelPassword string
	// TLS, when non-nil, is used for every connection (server and
	// sentinels); it overrides what the URL's scheme implies.
	TLS *tls.Config
	// TLSFiles, when TLS is nil and any file is named, turns TLS on with
	// these PEM files (LETHE_REDIS_CA, LETHE_REDIS_CERT, LETHE_REDIS_KEY):
	// the server is verified against CA and the client certificate is
	// presented. The server's certificate must carry the URL's host, also
	// with sentinels (name the primaries' common name there).
	TLSFiles tlsfiles.Files
}

// Validate reports an unusable combination, saying how to fix it.
func (o Options) Validate() error {
	if o.URL == "" {
		return errors.New("redis URL is empty: set LETHE_REDIS_URL (redis://[user:password@]host:port/db)")
	}
	if len(o.SentinelAddrs) > 0 && o.MasterName == "" {
		return errors.New("sentinel addresses are set but the master name is empty: set LETHE_REDIS_MASTER_NAME")
	}
	return o.TLSFiles.Validate("LETHE_REDIS")
}

// New builds the client without contacting Redis. The returned client is a
// *redis.Client in both modes (go-redis's failover client is one), so the
// callers' types do not depend on how Redis is deployed.
func New(o Options) (*redis.Client, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ropts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("parse redis URL (want redis://[user:password@]host:port/db): %w", err)
	}
	switch {
	case o.TLS != nil:
		ropts.TLSConfig = o.TLS
	case o.TLSFiles.Enabled():
		host, _, err := net.SplitHostPort(ropts.Addr)
		if err != nil {
			host = ropts.Addr
		}
		if ropts.TLSConfig, err = o.TLSFiles.Config(host); err != nil {
			return nil, fmt.Errorf("redis tls (check LETHE_REDIS_CA, LETHE_REDIS_CERT and LETHE_REDIS_KEY): %w", err)
		}
	}
	if len(o.SentinelAddrs) == 0 {
		return redis.NewClient(ropts), nil
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:       o.MasterName,
		SentinelAddrs:    o.SentinelAddrs,
		SentinelUsername: o.SentinelUsername,
		SentinelPassword: o.SentinelPassword,
		Username:         ropts.Username,
		Password:         ropts.Password,
		DB:               ropts.DB,
		TLSConfig:        ropts.TLSConfig,
		// A failover drops every connection; these bound how long a
		// command waits before the client re-asks the sentinels.
		DialTimeout:  ropts.DialTimeout,
		ReadTimeout:  ropts.ReadTimeout,
		WriteTimeout: ropts.WriteTimeout,
	}), nil
}

// Open is New followed by a PING, so that a process fails at start-up with
// an error that names what it tried to reach.
func Open(ctx context.Context, o Options) (*redis.Client, error) {
	rdb, err := New(o)
	if err != nil {
		return nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("reach redis at %s (is it running? check LETHE_REDIS_URL%s): %w", o.where(), o.sentinelHint(), err)
	}
	return rdb, nil
}

func (o Options) where() string {
	if len(o.SentinelAddrs) > 0 {
		return fmt.Sprintf("master %q via sentinels %s", o.MasterName, strings.Join(o.SentinelAddrs, ","))
	}
	if ropts, err := redis.ParseURL(o.URL); err == nil {
		return ropts.Addr
	}
	return "the configured address"
}

func (o Options) sentinelHint() string {
	if len(o.SentinelAddrs) > 0 {
		return ", LETHE_REDIS_SENTINELS and LETHE_REDIS_MASTER_NAME"
	}
	return ""
}
