package redisconn_test

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/redisconn"
	"github.com/lethe-privacy/lethe/lib/tlsfiles"
	"github.com/lethe-privacy/lethe/lib/tlsfiles/tlstest"
)

// startTLSRedis runs a redis-server of its own that speaks TLS only, on
// 127.0.0.1, requiring client certificates signed by pki's CA.
func startTLSRedis(t *testing.T, pki tlstest.PKI) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: the TLS test starts one of its own (scripts/test installs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey, "--tls-ca-cert-file", pki.CA,
		"--tls-auth-clients", "yes", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			return addr
		}
		if i == 100 {
			t.Fatalf("redis-server with TLS did not listen on %s (see %s; built without TLS?)", addr, filepath.Join(dir, "redis.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTLSWithClientCertificate(t *testing.T) {
	pki := tlstest.New(t)
	addr := startTLSRedis(t, pki)
	ctx := context.Background()
	tests := []struct {
		name    string
		url     string
		files   tlsfiles.Files
		wantErr string
	}{
		{name: "files turn TLS on for redis://", url: "redis://" + addr + "/0", files: pki.Client()},
		{name: "rediss:// with the files", url: "rediss://" + addr + "/0", files: pki.Client()},
		{name: "no client certificate", url: "rediss://" + addr + "/0", files: tlsfiles.Files{CA: pki.CA}, wantErr: "reach redis at " + addr},
		{name: "no TLS", url: "redis://" + addr + "/0", wantErr: "reach redis at " + addr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, err := redisconn.Open(ctx, redisconn.Options{URL: tt.url, TLSFiles: tt.files})
			if tt.wantErr != "" {
				if err == nil {
					_ = rdb.Close()
					t.Fatal("reached redis, want a refusal")
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer rdb.Close()
			if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    redisconn.Options
		wantErr string
	}{
		{name: "url with ACL user", give: redisconn.Options{URL: "redis://lethe:secret@127.0.0.1:6379/0"}},
		{name: "empty url", give: redisconn.Options{}, wantErr: "LETHE_REDIS_URL"},
		{name: "sentinels without master", give: redisconn.Options{URL: "redis://x/0", SentinelAddrs: []string{"a:1"}}, wantErr: "LETHE_REDIS_MASTER_NAME"},
		{name: "key without cert", give: redisconn.Options{URL: "redis://x/0", TLSFiles: tlsfiles.Files{Key: "k.pem"}}, wantErr: "LETHE_REDIS_CERT and LETHE_REDIS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestErrorsHideThePassword(t *testing.T) {
	_, err := redisconn.New(redisconn.Options{URL: "redis://lethe:s3cret@127.0.0.1:6379/x"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("New with a bad URL = %v, want an error without the password", err)
	}
}
