package brokerauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/topology"
)

// TestShippedConfIsFresh keeps deploy/nats/auth.conf equal to the rules
// in this package, so that the permission test tests what is deployed.
func TestShippedConfIsFresh(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", brokerauth.ConfFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := brokerauth.Conf(topology.DefaultSettings().Categories); string(shipped) != want {
		t.Errorf("deploy/nats/auth.conf is stale; regenerate it from the repository root:\n" +
			"  go run ./lib/brokerauth/cmd/lethe-nats-auth conf > deploy/nats/auth.conf")
	}
}

func TestKeysKeepsExistingSeeds(t *testing.T) {
	dir := t.TempDir()
	ids := brokerauth.Identities([]string{"contacts"})
	first, err := brokerauth.Keys(dir, ids)
	if err != nil {
		t.Fatal(err)
	}
	second, err := brokerauth.Keys(dir, ids)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, brokerauth.KeysFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if first[id] == "" || first[id] != second[id] || !strings.HasPrefix(first[id], "U") {
			t.Errorf("%s: public key %q then %q, want the same user key twice", id, first[id], second[id])
		}
		if !strings.Contains(string(conf), brokerauth.KeyVariable(id)+": \""+first[id]+"\"") {
			t.Errorf("%s does not define %s", brokerauth.KeysFile, brokerauth.KeyVariable(id))
		}
		st, err := os.Stat(filepath.Join(dir, brokerauth.SeedFile(id)))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("seed of %s has mode %v, want 0600", id, st.Mode().Perm())
		}
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, brokerauth.SeedFile("coordinator")), []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := brokerauth.Keys(bad, []string{"coordinator"}); err == nil || !strings.Contains(err.Error(), "delete it to make a new one") {
		t.Errorf("Keys with a corrupt seed = %v, want an error that says what to do", err)
	}
}

func TestKeyVariable(t *testing.T) {
	tests := []struct{ give, want string }{
		{"coordinator", "LETHE_NKEY_COORDINATOR"},
		{"worker-contacts", "LETHE_NKEY_WORKER_CONTACTS"},
	}
	for _, tt := range tests {
		if got := brokerauth.KeyVariable(tt.give); got != tt.want {
			t.Errorf("KeyVariable(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
