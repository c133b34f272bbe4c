// Package natsconn opens the NATS connection every Lethe process uses, with
// the same reconnect policy and logging everywhere: reconnect forever (a
// broker restart must never stop a worker or the coordinator), and say so
// in the log when the link drops and comes back. Auth carries each
// process's own credentials and TLS files (see package brokerauth for who
// may do what).
package natsconn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Connect dials url as the client name and returns the connection and its
// JetStream context; opts come after the defaults (Auth.Options gives the
// credentials). The error says what to check.
func Connect(url, name string, log *zap.Logger, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	all := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is our own Close: nothing to warn about.
			if err != nil {
				log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
		// A denied publish or subscription is reported asynchronously; a
		// request to a denied subject would otherwise just time out.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			fields := []zap.Field{zap.Error(err)}
			if sub != nil {
				fields = append(fields, zap.String("subscription", sub.Subject))
			}
			log.Error("nats error", fields...)
		}),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, nil, fmt.Errorf("nats at %s refused this service's credentials (check %s or %s against the server's authorization): %w", redacted(url), EnvNKeySeedFile, EnvCredsFile, err)
		}
		return nil, nil, fmt.Errorf("connect to nats at %s (is it running? set LETHE_NATS_URL): %w", redacted(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("create jetstream context: %w", err)
	}
	return nc, js, nil
}

// redacted hides passwords in a URL, or in each of a comma-separated list
// of URLs, for error messages.
func redacted(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		} else {
			parts[i] = "(unparsable URL)"
		}
	}
	return strings.Join(parts, ",")
}
