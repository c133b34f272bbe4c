package natsconn

import (
	"errors"
	"flag"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/tlsfiles"
)

// Environment variables of Auth. The password has no flag: the process
// list shows flags to every user of the machine.
const (
	EnvUser         = "LETHE_NATS_USER"
	EnvPassword     = "LETHE_NATS_PASSWORD"
	EnvNKeySeedFile = "LETHE_NATS_NKEY_SEED_FILE"
	EnvCredsFile    = "LETHE_NATS_CREDS"
	EnvCA           = "LETHE_NATS_CA"
	EnvCert         = "LETHE_NATS_CERT"
	EnvKey          = "LETHE_NATS_KEY"
)

// Auth says how a process proves who it is to NATS and how the link is
// encrypted. At most one way of authenticating is set: an nkey seed file
// (what deploy/nats/auth.conf expects, see package brokerauth), a
// credentials file (JWT-based accounts), or a user and password. None:
// anonymous, for a server without authorization (tests, old set-ups).
type Auth struct {
	User         string
	Password     string
	NKeySeedFile string
	CredsFile    string
	// TLS: with any file named, the connection requires TLS, verifies the
	// server against CA (else the system roots) and presents Cert/Key
	// when the server asks for a client certificate.
	TLS tlsfiles.Files
}

// AuthFromEnv reads Auth from the LETHE_NATS_* variables.
func AuthFromEnv(getenv func(string) string) Auth {
	return Auth{
		User:         getenv(EnvUser),
		Password:     getenv(EnvPassword),
		NKeySeedFile: getenv(EnvNKeySeedFile),
		CredsFile:    getenv(EnvCredsFile),
		TLS:          tlsfiles.Files{CA: getenv(EnvCA), Cert: getenv(EnvCert), Key: getenv(EnvKey)},
	}
}

// RegisterFlags declares -nats-user, -nats-nkey-seed-file, -nats-creds,
// -nats-ca, -nats-cert and -nats-key on fs, with defaults from getenv; the
// password comes from LETHE_NATS_PASSWORD only.
func (a *Auth) RegisterFlags(fs *flag.FlagSet, getenv func(string) string) {
	*a = AuthFromEnv(getenv)
	fs.StringVar(&a.User, "nats-user", a.User, "NATS user; the password comes from "+EnvPassword+" only (env "+EnvUser+")")
	fs.StringVar(&a.NKeySeedFile, "nats-nkey-seed-file", a.NKeySeedFile, "file holding this service's NATS nkey seed (env "+EnvNKeySeedFile+")")
	fs.StringVar(&a.CredsFile, "nats-creds", a.CredsFile, "NATS credentials file, for JWT-based accounts (env "+EnvCredsFile+")")
	fs.StringVar(&a.TLS.CA, "nats-ca", a.TLS.CA, "PEM file of the CA that signed the NATS server's certificate; turns TLS on (env "+EnvCA+")")
	fs.StringVar(&a.TLS.Cert, "nats-cert", a.TLS.Cert, "PEM client certificate for NATS mutual TLS (env "+EnvCert+")")
	fs.StringVar(&a.TLS.Key, "nats-key", a.TLS.Key, "PEM key of -nats-cert (env "+EnvKey+")")
}

// ErrInvalidAuth is wrapped by Validate's errors.
var ErrInvalidAuth = errors.New("invalid nats credentials")

// Validate reports conflicting or incomplete settings, naming the
// variables to fix.
func (a Auth) Validate() error {
	n := 0
	for _, set := range []bool{a.User != "" || a.Password != "", a.NKeySeedFile != "", a.CredsFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return fmt.Errorf("%w: set only one of %s (with %s), %s and %s", ErrInvalidAuth, EnvUser, EnvPassword, EnvNKeySeedFile, EnvCredsFile)
	case a.Password != "" && a.User == "":
		return fmt.Errorf("%w: %s is set without %s", ErrInvalidAuth, EnvPassword, EnvUser)
	}
	return a.TLS.Validate("LETHE_NATS")
}

// Authenticated reports whether any credential is set.
func (a Auth) Authenticated() bool {
	return a.User != "" || a.NKeySeedFile != "" || a.CredsFile != ""
}

// Options turns a into connection options for the given identity (see
// package brokerauth): its credentials, its TLS settings, and the inbox
// prefix its permissions allow it to read replies on.
func (a Auth) Options(identity string) ([]nats.Option, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.CustomInboxPrefix(brokerauth.InboxPrefix(identity))}
	switch {
	case a.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("read nats nkey seed %s (set %s to this service's seed file): %w", a.NKeySeedFile, EnvNKeySeedFile, err)
		}
		opts = append(opts, o)
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.TLS.Enabled() {
		cfg, err := a.TLS.Config("")
		if err != nil {
			return nil, fmt.Errorf("nats tls (check %s, %s and %s): %w", EnvCA, EnvCert, EnvKey, err)
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}
