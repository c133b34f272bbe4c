// Package tlsfiles turns the PEM files an operator names (a CA to trust,
// and a client certificate with its key) into a *tls.Config, the same way
// for every link a Lethe process opens: NATS, Redis and, through the URL,
// PostgreSQL. Keeping the loading in one place means one set of error
// messages and one set of defaults (TLS 1.2 at least) everywhere.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names the PEM files of one TLS link. All fields are optional:
//   - CA alone verifies the server against that CA instead of the system
//     roots;
//   - Cert and Key (both or neither) present a client certificate, for
//     servers that require mutual TLS.
type Files struct {
	CA   string
	Cert string
	Key  string
}

// ErrInvalid is wrapped by Validate's and Config's errors.
var ErrInvalid = errors.New("invalid tls settings")

// Enabled reports whether any file is named, that is whether the link
// should use TLS with these files.
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Validate reports a certificate without its key or the reverse. prefix is
// the environment variables' prefix (e.g. LETHE_NATS) so that the message
// names what to set.
func (f Files) Validate(prefix string) error {
	if (f.Cert == "") != (f.Key == "") {
		return fmt.Errorf("%w: %s_CERT and %s_KEY must be set together (a client certificate needs its key)", ErrInvalid, prefix, prefix)
	}
	return nil
}

// Config loads the files into a client configuration. serverName, when
// not empty, is the name the server's certificate must carry (otherwise
// the host dialled is used). It returns an error naming the file that
// could not be read or parsed.
func (f Files) Config(serverName string) (*tls.Config, error) {
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("%w: a client certificate needs its key and the reverse", ErrInvalid)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("read CA file %s: %w", f.CA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrInvalid, f.CA)
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
