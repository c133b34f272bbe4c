// Package natsconn opens the NATS connection every Lethe process uses, with
// the same reconnect policy and logging everywhere: reconnect forever (a
// broker restart must never stop a worker or the coordinator), and say so
// in the log when the link drops and comes back.
package natsconn

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Connect dials url as the client name and returns the connection and its
// JetStream context. The error says what to check.
func Connect(url, name string, log *zap.Logger, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	all := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", zap.Error(err)) }),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats at %s (is it running? set LETHE_NATS_URL): %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("create jetstream context: %w", err)
	}
	return nc, js, nil
}
