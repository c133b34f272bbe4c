package app

import (
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestAuditKeyConfig(t *testing.T) {
	c, err := LoadConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.AuditKey != ".lethe/keys/audit.key" || !c.AuditKeyCreate {
		t.Errorf("defaults: %q create=%v", c.AuditKey, c.AuditKeyCreate)
	}
	env := map[string]string{"LETHE_AUDIT_KEY": "/etc/lethe/audit.key", "LETHE_AUDIT_KEY_CREATE": "false"}
	c, err = LoadConfig(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.AuditKey != "/etc/lethe/audit.key" || c.AuditKeyCreate {
		t.Errorf("from the environment: %q create=%v", c.AuditKey, c.AuditKeyCreate)
	}

	dir := t.TempDir()
	missing := Config{AuditKey: filepath.Join(dir, "missing.key")}
	if _, err := auditKeys(missing, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("production without a key file: %v, want an error saying how to make one", err)
	}
	dev := Config{AuditKey: filepath.Join(dir, "keys", "audit.key"), AuditKeyCreate: true}
	created, err := auditKeys(dev, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dev.AuditKeyCreate = false
	loaded, err := auditKeys(dev, zap.NewNop())
	if err != nil || loaded.Signing().ID() != created.Signing().ID() {
		t.Fatalf("load the created key: %v, %v", loaded, err)
	}
	if r, err := auditKeys(Config{}, zap.NewNop()); r != nil || err != nil || auditVerifier(nil, r) != nil {
		t.Errorf("no key file configured: %v, %v; want no keys and no verifier", r, err)
	}
}
