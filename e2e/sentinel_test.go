package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelMaster is the name the sentinels monitor the primary under.
const sentinelMaster = "lethe"

// redisProc is one redis-server process (a data server or a sentinel).
type redisProc struct {
	name, addr, log string
	mu              sync.Mutex
	cmd             *exec.Cmd
	exited          chan struct{}
}

// redisSentinel is a Redis primary, two replicas and three sentinels on
// loopback. One replica is enough for a failover (a quorum of two
// sentinels agrees that the primary is down and promotes it); the second
// lets a test fail over twice in a row: Sentinel points the remaining
// replica at the new primary during the failover, while the old primary
// becomes a replica only after Sentinel's next look at it, up to 10 s and
// more later.
type redisSentinel struct {
	primary   *redisProc
	replicas  []*redisProc
	sentinels []*redisProc
}

// startRedisSentinel starts the six processes and waits until the
// replicas are in sync and every sentinel knows them and the other two
// sentinels, so that a failover can happen. They are killed when the test
// ends. Nothing is written to disk but the sentinels' own configuration
// files (Sentinel rewrites them as it learns the set-up).
func startRedisSentinel(t *testing.T) *redisSentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not on PATH: the Sentinel test runs its own servers (apt-get install redis-server)")
	}
	dir := t.TempDir()
	ports := freePorts(t, 6)
	rs := &redisSentinel{}
	t.Cleanup(func() {
		for _, p := range rs.all() {
			if p != nil {
				p.kill()
				if t.Failed() {
					t.Logf("last lines of redis %s's log:\n%s", p.name, tail(p.log, 20))
				}
			}
		}
	})
	data := func(name string, port int, extra ...string) *redisProc {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		p := &redisProc{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(dir, name+".log")}
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", d, "--logfile", p.log}, extra...)
		p.start(t, bin, args...)
		return p
	}
	rs.primary = data("primary", ports[0])
	for i := range 2 {
		rs.replicas = append(rs.replicas, data(fmt.Sprintf("replica%d", i+1), ports[1+i], "--replicaof", "127.0.0.1", strconv.Itoa(ports[0])))
	}
	for i := range 3 {
		name := fmt.Sprintf("sentinel%d", i+1)
		p := &redisProc{name: name, addr: fmt.Sprintf("127.0.0.1:%d", ports[3+i]), log: filepath.Join(dir, name+".log")}
		conf := filepath.Join(dir, name+".conf")
		// Down after one second without an answer; quorum two of three;
		// a failover may take 10 s before another is tried (with 3 s, a
		// sentinel slowed by a loaded machine started a second failover that
		// flipped the primary back after the test had rebuilt the jobs).
		text := strings.Join([]string{
			"port " + strconv.Itoa(ports[3+i]),
			"bind 127.0.0.1",
			"dir " + dir,
			"logfile " + p.log,
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", sentinelMaster, ports[0]),
			"sentinel down-after-milliseconds " + sentinelMaster + " 1000",
			"sentinel failover-timeout " + sentinelMaster + " 10000",
			"sentinel parallel-syncs " + sentinelMaster + " 1",
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		p.start(t, bin, conf, "--sentinel")
		rs.sentinels = append(rs.sentinels, p)
	}

	ctx := context.Background()
	for _, r := range rs.replicas {
		rs.waitReplicating(t, r, rs.primary)
	}
	for _, s := range rs.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.addr})
		eventually(t, 30*time.Second, s.name+" knows the replicas and the other sentinels", func() bool {
			replicas, err := sc.Replicas(ctx, sentinelMaster).Result()
			if err != nil || len(replicas) != 2 {
				return false
			}
			others, err := sc.Sentinels(ctx, sentinelMaster).Result()
			return err == nil && len(others) == 2
		})
		_ = sc.Close()
	}
	return rs
}

// all lists every process.
func (rs *redisSentinel) all() []*redisProc {
	out := append([]*redisProc{rs.primary}, rs.replicas...)
	return append(out, rs.sentinels...)
}

// byAddr returns the data server listening on addr.
func (rs *redisSentinel) byAddr(t *testing.T, addr string) *redisProc {
	t.Helper()
	for _, p := range append([]*redisProc{rs.primary}, rs.replicas...) {
		if p.addr == addr {
			return p
		}
	}
	t.Fatalf("no redis server listens on %s", addr)
	return nil
}

// waitReplicating waits until replica replicates from primary and is in
// sync with it.
func (rs *redisSentinel) waitReplicating(t *testing.T, replica, primary *redisProc) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: replica.addr})
	defer c.Close()
	_, port, _ := net.SplitHostPort(primary.addr)
	eventually(t, 60*time.Second, "redis "+replica.name+" replicates from "+primary.name, func() bool {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+port+"\r") &&
			strings.Contains(info, "master_link_status:up")
	})
}

// sentinelAddrs lists the sentinels' addresses, as the coordinator is
// configured (LETHE_REDIS_SENTINELS).
func (rs *redisSentinel) sentinelAddrs() []string {
	var out []string
	for _, s := range rs.sentinels {
		out = append(out, s.addr)
	}
	return out
}

// masterAddr asks every sentinel where the primary is now and returns
// the answer when all three agree; "" while they do not. Until they all
// agree, a client may still be sent to the old primary (the coordinator's
// client asks a sentinel at every new connection), and an old primary
// that is still up keeps accepting those writes.
func (rs *redisSentinel) masterAddr() string {
	agreed := ""
	for i, s := range rs.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.addr})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		hp, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
		cancel()
		_ = sc.Close()
		if err != nil || len(hp) != 2 {
			return ""
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if i > 0 && addr != agreed {
			return ""
		}
		agreed = addr
	}
	return agreed
}

func (p *redisProc) start(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	eventually(t, 20*time.Second, "redis "+p.name+" listens on "+p.addr, func() bool {
		select {
		case <-exited:
			t.Fatalf("redis %s exited at start:\n%s", p.name, tail(p.log, 20))
		default:
		}
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	})
}

// kill stops the process with SIGKILL and waits until it is gone.
func (p *redisProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}
