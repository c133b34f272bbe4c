package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The cluster tests run three nats-server processes, not three embedded
// servers: a node must die as a crashed machine does (kill -9: no
// shutdown, no leadership hand-over, no flush), which an in-process
// server cannot do without taking the test with it. The binary is
// nats-server v2.15.3, the version the embedded test servers run:
// LETHE_NATS_SERVER_BIN names it (scripts/test builds it once into
// .lethe/bin); without it, the test builds the nats-server module this
// workspace pins, once per test binary (after the first time the Go build
// cache makes that a link step).

// envNATSServerBin names a nats-server binary to use instead of building
// one.
const envNATSServerBin = "LETHE_NATS_SERVER_BIN"

// clusterConf is the node configuration the deployment uses.
const clusterConf = "../deploy/nats/cluster/nats-server.conf"

var (
	natsBinOnce sync.Once
	natsBin     string
	natsBinErr  error
	natsBinOut  []byte
)

// buildNATSServer returns the pinned nats-server binary.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	natsBinOnce.Do(func() {
		if p := os.Getenv(envNATSServerBin); p != "" {
			natsBin = p
			return
		}
		dir, err := os.MkdirTemp("", "lethe-e2e-nats-")
		if err != nil {
			natsBinErr = err
			return
		}
		natsBin = filepath.Join(dir, "nats-server")
		// The module is a dependency of lib: go build takes the version
		// go.work selects, the one the embedded servers run.
		natsBinOut, natsBinErr = exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	})
	if natsBinErr != nil {
		t.Fatalf("build nats-server: %v\n%s", natsBinErr, natsBinOut)
	}
	return natsBin
}

// natsNode is one nats-server process of a natsCluster.
type natsNode struct {
	name                   string
	client, route, monitor int
	clientURL, monitorURL  string
	routeURLs              string // every node's route, as NATS_ROUTES
	store, log             string
	bin, conf              string

	mu     sync.Mutex
	cmd    *exec.Cmd // nil while the node is down
	exited chan struct{}
}

// natsCluster is three nodes of the cluster configuration on loopback.
type natsCluster struct {
	nodes []*natsNode
}

// freePorts reserves n distinct free loopback ports. They are released
// before the servers bind them; another process could take one in
// between, which would show as a node that does not start.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// startNATSCluster starts three nodes and waits until JetStream has a
// meta leader that every node follows. They are killed when the test ends.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	bin := buildNATSServer(t)
	conf, err := filepath.Abs(clusterConf)
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 9)
	dir := t.TempDir()
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
	}
	c := &natsCluster{}
	for i := range 3 {
		n := &natsNode{
			name: fmt.Sprintf("n%d", i+1), client: ports[i], route: ports[3+i], monitor: ports[6+i],
			store: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), log: filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
			bin: bin, conf: conf, routeURLs: "[" + strings.Join(routes, ", ") + "]",
		}
		n.clientURL = fmt.Sprintf("nats://127.0.0.1:%d", n.client)
		n.monitorURL = fmt.Sprintf("http://127.0.0.1:%d", n.monitor)
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("last lines of nats-server %s's log:\n%s", n.name, tail(n.log, 30))
			}
		}
	})
	for _, n := range c.nodes {
		n.start(t)
	}
	for _, n := range c.nodes {
		n.waitHealthy(t, 60*time.Second)
	}
	return c
}

// URL lists every node's client URL, as the services are configured.
func (c *natsCluster) URL() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.clientURL)
	}
	return strings.Join(urls, ",")
}

// node returns the node called name.
func (c *natsCluster) node(t *testing.T, name string) *natsNode {
	t.Helper()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	t.Fatalf("no cluster node is called %q", name)
	return nil
}

// Connect opens a client connection to the whole cluster that is closed
// when the test ends.
func (c *natsCluster) Connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to the nats cluster %s: %v", c.URL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// metaLeader asks the live nodes which node leads the JetStream meta
// group; "" while there is none.
func (c *natsCluster) metaLeader() string {
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		var jsz struct {
			Meta struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		if getJSON(n.monitorURL+"/jsz", &jsz) == nil && jsz.Meta.Leader != "" {
			return jsz.Meta.Leader
		}
	}
	return ""
}

func (n *natsNode) start(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(n.bin, "-c", n.conf)
	cmd.Env = append(os.Environ(),
		"NATS_SERVER_NAME="+n.name,
		fmt.Sprintf("NATS_LISTEN=127.0.0.1:%d", n.client),
		fmt.Sprintf("NATS_HTTP=127.0.0.1:%d", n.monitor),
		fmt.Sprintf("NATS_CLUSTER_LISTEN=127.0.0.1:%d", n.route),
		"NATS_ROUTES="+n.routeURLs,
		"NATS_STORE_DIR="+strconvQuote(n.store),
		`NATS_SYNC_INTERVAL="2m"`,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server %s: %v", n.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.cmd, n.exited = cmd, exited
}

// kill stops the node with SIGKILL, as a crash would, and waits for it
// to be gone.
func (n *natsNode) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

func (n *natsNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// waitHealthy waits until the node's /healthz answers 200: JetStream is
// up, follows the meta leader, and every stream and consumer replica it
// holds is current.
func (n *natsNode) waitHealthy(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n.mu.Lock()
		exited := n.exited
		n.mu.Unlock()
		select {
		case <-exited:
			t.Fatalf("nats-server %s exited:\n%s", n.name, tail(n.log, 30))
		default:
		}
		if resp, err := http.Get(n.monitorURL + "/healthz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s not healthy within %s:\n%s", n.name, within, tail(n.log, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(url string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	addAuth(req) // the coordinator's API needs it; nats-server ignores it
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// tail returns the last lines of a log file, for failure messages.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// strconvQuote quotes a path for the server's configuration language.
func strconvQuote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}
