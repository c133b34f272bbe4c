package brokerauth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// KeysFile is the name of the file Keys writes the public keys to, as
// nats-server configuration variables.
const KeysFile = "nkeys.conf"

// SeedFile is the file name of an identity's seed in the keys directory.
func SeedFile(identity string) string { return identity + ".nk" }

// Keys makes sure dir holds a user nkey seed for every identity
// (<identity>.nk, mode 0600; an existing seed is kept, so that running
// it again changes nothing) and writes KeysFile with their public keys.
// It returns the public keys by identity.
func Keys(dir string, identities []string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create keys directory %s: %w", dir, err)
	}
	pubs := make(map[string]string, len(identities))
	var conf bytes.Buffer
	conf.WriteString("# Public nkeys of Lethe's NATS identities, written by lethe-nats-auth keys.\n")
	conf.WriteString("# Not secret; the seeds beside this file are.\n")
	for _, id := range identities {
		pub, err := ensureSeed(filepath.Join(dir, SeedFile(id)))
		if err != nil {
			return nil, err
		}
		pubs[id] = pub
		fmt.Fprintf(&conf, "%s: %q\n", KeyVariable(id), pub)
	}
	if err := os.WriteFile(filepath.Join(dir, KeysFile), conf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", filepath.Join(dir, KeysFile), err)
	}
	return pubs, nil
}

// KeysConf renders KeysFile's content for public keys given by identity,
// for tests and tools that hold the keys in memory.
func KeysConf(pubs map[string]string, identities []string) string {
	var b strings.Builder
	for _, id := range identities {
		fmt.Fprintf(&b, "%s: %q\n", KeyVariable(id), pubs[id])
	}
	return b.String()
}

// ensureSeed reads the user seed at path, or creates one, and returns its
// public key.
func ensureSeed(path string) (string, error) {
	seed, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", fmt.Errorf("create nkey for %s: %w", path, err)
		}
		if seed, err = kp.Seed(); err != nil {
			return "", fmt.Errorf("encode nkey seed for %s: %w", path, err)
		}
		if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
			return "", fmt.Errorf("write nkey seed %s: %w", path, err)
		}
	case err != nil:
		return "", fmt.Errorf("read nkey seed %s: %w", path, err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", fmt.Errorf("parse nkey seed %s (delete it to make a new one): %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("public key of %s: %w", path, err)
	}
	if !strings.HasPrefix(pub, "U") {
		return "", fmt.Errorf("nkey seed %s is not a user seed (its public key starts with %q, want U)", path, pub[:1])
	}
	return pub, nil
}
