package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

// coordinatorACL reads deploy/redis/coordinator.acl: the coordinator's
// Redis rules as operators (and scripts/demo) apply them.
func coordinatorACL(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "deploy", "redis", "coordinator.acl"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			rules = append(rules, strings.Fields(line)...)
		}
	}
	return rules
}

// TestCoordinatorRunsAsARedisACLUserLimitedToItsPrefix runs the coordinator
// as a Redis user that may touch only the keys under its prefix, with only
// the commands of deploy/redis/coordinator.acl: a job completes, a rebuild
// runs, the ACL log shows no refusal, and the user cannot read a key
// outside the prefix. The commands were found this way: start from none,
// add what the ACL log names.
func TestCoordinatorRunsAsARedisACLUserLimitedToItsPrefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var admin *redis.Client
	user := "lethe-test-" + randomHex(t, 6)
	var aclURL string
	p := startPipelineWith(t, func(c *app.Config) {
		opts, err := redis.ParseURL(c.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		admin = redis.NewClient(opts)
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = admin.Do(cctx, "ACL", "DELUSER", user).Err()
			_ = admin.Close()
		})
		password := randomHex(t, 16)
		args := []any{"ACL", "SETUSER", user, "reset", "on", ">" + password}
		for _, r := range coordinatorACL(t) {
			args = append(args, r)
		}
		args = append(args, "~"+c.RedisPrefix+"*")
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("create the ACL user: %v", err)
		}
		u, err := url.Parse(c.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(user, password)
		aclURL = u.String()
		c.RedisURL = aclURL
		c.MonitorInterval = 200 * time.Millisecond
		c.ReconcileInterval = 200 * time.Millisecond
	})
	p.seed(t, 50, "acct-acl")
	p.startWorker(t, p.contacts)

	code, body := p.call(t, "POST", "/v1/erasures", map[string]any{"account_id": "acct-acl", "reason": "acl test"})
	if code != http.StatusAccepted {
		t.Fatalf("request erasure: %d %s", code, body)
	}
	if j := p.waitJob(t, "acct-acl", 30*time.Second); j.Status != apiv1.JobCompleted {
		t.Fatalf("job %s: %+v", j.Status, j.Tasks)
	}
	if code, body := p.call(t, "POST", "/v1/admin/rebuild", nil); code != http.StatusOK {
		t.Errorf("rebuild as the ACL user: %d %s", code, body)
	}
	// A monitor round and a reconciliation pass ran meanwhile; their
	// commands are in the log too.
	time.Sleep(500 * time.Millisecond)

	// The log is shared with every test on this Redis: read it, never
	// reset it, and look at this user's entries only.
	entries, err := admin.ACLLog(ctx, 1000).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Username == user {
			t.Errorf("redis refused the coordinator: %s %s (context %s); add it to deploy/redis/coordinator.acl", e.Reason, e.Object, e.Context)
		}
	}

	// The user is confined to its prefix.
	opts, err := redis.ParseURL(aclURL)
	if err != nil {
		t.Fatal(err)
	}
	confined := redis.NewClient(opts)
	defer confined.Close()
	err = confined.Get(ctx, "lethe-acl-outside:"+erasurev1.CategoryContacts).Err()
	if err == nil || errors.Is(err, redis.Nil) || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("GET outside the prefix as the ACL user: %v, want NOPERM", err)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
