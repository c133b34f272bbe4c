package harness

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// natsServer is a nats-server process with JetStream, on loopback.
type natsServer struct {
	proc *proc
	url  string
}

// startNATS starts bin with JetStream storing in dir, in the storage
// configuration st: the server's default sync interval, or sync_interval:
// always.
func startNATS(ctx context.Context, bin, dir, logDir string, st Storage, profPort int) (*natsServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	store := filepath.Join(dir, "jetstream")
	sync := "  # sync_interval not set: the server's default (fsync every 2 minutes)\n"
	if st == StorageAlways {
		sync = "  sync_interval: always\n"
	}
	conf := fmt.Sprintf("server_name: lethe-bench\nlisten: %s\nhttp: %s\njetstream {\n  store_dir: %q\n%s}\n",
		loopback(port), loopback(mport), store, sync)
	if profPort != 0 {
		// Bound to the listen host, 127.0.0.1.
		conf += fmt.Sprintf("prof_port: %d\n", profPort)
	}
	confPath := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("write nats-server configuration: %w", err)
	}
	p, err := startProc("nats-server-"+string(st), bin, []string{"-c", confPath}, nil, logDir)
	if err != nil {
		return nil, err
	}
	health := "http://" + loopback(mport) + "/healthz?js-enabled-only=true"
	if err := waitHTTP(ctx, health, p, 30*time.Second); err != nil {
		_ = p.stop(5 * time.Second)
		return nil, err
	}
	return &natsServer{proc: p, url: "nats://" + loopback(port)}, nil
}

// binaryVersion runs bin --version (or -v) and returns its first line.
func binaryVersion(ctx context.Context, bin string, arg string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, arg).CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// redisTarget is the Redis a pipeline run uses: the harness's own server,
// or a shared one under a key prefix of the run's own.
type redisTarget struct {
	own    *proc
	url    string
	prefix string
	client *redis.Client
}

// startRedis starts redis-server on a free loopback port with the shipped
// persistence (docker-compose.yml: appendonly yes, whose default fsync is
// every second) and nothing else, or connects to rawURL when bin is empty.
func startRedis(ctx context.Context, bin, rawURL, dir, logDir, prefix string) (*redisTarget, error) {
	t := &redisTarget{url: rawURL, prefix: prefix}
	if bin != "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		data := filepath.Join(dir, "redis")
		if err := os.MkdirAll(data, 0o750); err != nil {
			return nil, fmt.Errorf("create redis directory: %w", err)
		}
		p, err := startProc("redis-"+filepath.Base(dir), bin, []string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", data,
			"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
		}, nil, logDir)
		if err != nil {
			return nil, err
		}
		t.own = p
		t.url = "redis://" + loopback(port) + "/0"
	}
	opts, err := redis.ParseURL(t.url)
	if err != nil {
		t.stop()
		return nil, fmt.Errorf("parse the redis URL: %w", err)
	}
	t.client = redis.NewClient(opts)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := t.client.Ping(ctx).Err()
		if err == nil {
			return t, nil
		}
		if time.Now().After(deadline) || (t.own != nil && t.own.exited()) || ctx.Err() != nil {
			t.stop()
			return nil, fmt.Errorf("reach redis at %s: %w (start it, or give -redis-server)", opts.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// usedMemory is INFO memory's used_memory, in bytes.
func (t *redisTarget) usedMemory(ctx context.Context) (int64, error) {
	info, err := t.client.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("read redis INFO memory: %w", err)
	}
	v := info["Memory"]["used_memory"]
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read redis used_memory %q: %w", v, err)
	}
	return n, nil
}

// prefixUsage sums MEMORY USAGE over every key under the run's prefix and
// counts the keys. Unlike used_memory it counts this run alone, also on a
// Redis that others share.
func (t *redisTarget) prefixUsage(ctx context.Context) (bytes, keys int64, err error) {
	iter := t.client.Scan(ctx, 0, t.prefix+"*", 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		cmds, err := t.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			return fmt.Errorf("read redis MEMORY USAGE: %w", err)
		}
		for _, c := range cmds {
			if n, err := c.(*redis.IntCmd).Result(); err == nil {
				bytes += n
				keys++
			}
		}
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return 0, 0, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return 0, 0, fmt.Errorf("scan redis keys: %w", err)
	}
	return bytes, keys, flush()
}

// stop deletes the run's keys from a shared Redis, or stops the own one.
func (t *redisTarget) stop() {
	if t.client != nil && t.own == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := t.client.Scan(ctx, 0, t.prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 500 {
				t.client.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			t.client.Unlink(ctx, keys...)
		}
	}
	if t.client != nil {
		_ = t.client.Close()
	}
	if t.own != nil {
		_ = t.own.stop(10 * time.Second)
	}
}

// startStripeMock starts stripe-mock with both of its addresses on
// loopback (it listens on every interface unless both are given) and
// returns its HTTP URL.
func startStripeMock(ctx context.Context, bin, logDir string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	tls, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc("stripe-mock", bin, []string{"-http-addr", loopback(port), "-https-addr", loopback(tls)}, nil, logDir)
	if err != nil {
		return nil, "", err
	}
	u := "http://" + loopback(port)
	// stripe-mock has no health endpoint; any answer (here a 401 without a
	// key) means it serves.
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/v1/customers", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return p, u, nil
		}
		if time.Now().After(deadline) || p.exited() || ctx.Err() != nil {
			_ = p.stop(5 * time.Second)
			return nil, "", fmt.Errorf("stripe-mock did not serve on %s within 30 s; read %s", u, p.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// databases are the temporary PostgreSQL databases of a run.
type databases struct {
	admin string
	names []string
}

// create makes a database named name and returns its URL.
func (d *databases) create(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return "", fmt.Errorf("reach postgres with -postgres-url (is it running? scripts/bench starts it): %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s (may the -postgres-url role create databases?): %w", name, err)
	}
	d.names = append(d.names, name)
	u, err := url.Parse(d.admin)
	if err != nil {
		return "", fmt.Errorf("parse -postgres-url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// dropAll drops every database create made.
func (d *databases) dropAll() error {
	if len(d.names) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return fmt.Errorf("reach postgres to drop the bench databases %s: %w", strings.Join(d.names, ", "), err)
	}
	defer conn.Close(context.Background())
	var failed []string
	for _, n := range d.names {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
			failed = append(failed, n)
		}
	}
	d.names = nil
	if len(failed) > 0 {
		return fmt.Errorf("drop the bench databases %s: drop them by hand", strings.Join(failed, ", "))
	}
	return nil
}
