package natsconn_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap/zaptest"

	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/tlsfiles"
	"github.com/lethe-privacy/lethe/lib/tlsfiles/tlstest"
)

func TestAuthValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    natsconn.Auth
		wantErr string
	}{
		{name: "anonymous", give: natsconn.Auth{}},
		{name: "nkey", give: natsconn.Auth{NKeySeedFile: "/run/secrets/coordinator.nk"}},
		{name: "user and password", give: natsconn.Auth{User: "coordinator", Password: "pw"}},
		{name: "two methods", give: natsconn.Auth{User: "coordinator", NKeySeedFile: "x.nk"}, wantErr: "set only one of"},
		{name: "password alone", give: natsconn.Auth{Password: "pw"}, wantErr: "LETHE_NATS_PASSWORD is set without LETHE_NATS_USER"},
		{name: "cert without key", give: natsconn.Auth{TLS: tlsfiles.Files{Cert: "c.pem"}}, wantErr: "LETHE_NATS_CERT and LETHE_NATS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAuthFromEnv(t *testing.T) {
	env := map[string]string{natsconn.EnvNKeySeedFile: "/s.nk", natsconn.EnvCA: "/ca.pem", natsconn.EnvCert: "/c.pem", natsconn.EnvKey: "/k.pem"}
	a := natsconn.AuthFromEnv(func(k string) string { return env[k] })
	if a.NKeySeedFile != "/s.nk" || a.TLS != (tlsfiles.Files{CA: "/ca.pem", Cert: "/c.pem", Key: "/k.pem"}) || !a.Authenticated() {
		t.Errorf("AuthFromEnv = %+v", a)
	}
}

// TestTLS connects over TLS to an embedded server that requires client
// certificates: with the CA and a client certificate it works; without
// the client certificate, or trusting another CA, the server or the
// client refuses.
func TestTLS(t *testing.T) {
	pki := tlstest.New(t)
	other := tlstest.New(t)
	serverTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CaFile: pki.CA, Verify: true, Timeout: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSConfig: serverTLS, TLSTimeout: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	url := "nats://" + srv.Addr().String()

	tests := []struct {
		name    string
		give    tlsfiles.Files
		wantErr bool
	}{
		{name: "CA and client certificate", give: pki.Client()},
		{name: "no client certificate", give: tlsfiles.Files{CA: pki.CA}, wantErr: true},
		{name: "another CA", give: tlsfiles.Files{CA: other.CA, Cert: pki.ClientCert, Key: pki.ClientKey}, wantErr: true},
		{name: "a certificate of another CA", give: other.Client(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := natsconn.Auth{TLS: tt.give}.Options("coordinator")
			if err != nil {
				t.Fatal(err)
			}
			nc, _, err := natsconn.Connect(url, "test", zaptest.NewLogger(t), opts...)
			if tt.wantErr {
				if err == nil {
					nc.Close()
					t.Fatal("connected, want a refusal")
				}
				return
			}
			if err != nil {
				t.Fatalf("connect over TLS: %v", err)
			}
			defer nc.Close()
			if !nc.TLSRequired() {
				t.Error("connection does not use TLS")
			}
			if err := nc.Publish("x", nil); err != nil {
				t.Error(err)
			}
			if err := nc.Flush(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestTLSFilesErrorsNameTheVariable(t *testing.T) {
	if _, err := (natsconn.Auth{TLS: tlsfiles.Files{CA: "/does/not/exist.pem"}}).Options("x"); err == nil || !strings.Contains(err.Error(), "LETHE_NATS_CA") {
		t.Errorf("missing CA file: %v, want an error naming LETHE_NATS_CA", err)
	}
}
