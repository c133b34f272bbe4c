package app

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// auditKeys loads the audit key file named by the configuration —
// creating it when it is missing and AuditKeyCreate allows (development) —
// and logs the key ids, never the keys. An empty path turns the audit
// chain off (nil): events are then recorded unsigned.
func auditKeys(cfg Config, log *zap.Logger) (*audit.KeyRing, error) {
	if cfg.AuditKey == "" {
		log.Warn("no audit key (-audit-key is empty): lifecycle events are recorded unsigned and the trail is not tamper-evident")
		return nil, nil
	}
	var (
		ring    *audit.KeyRing
		created bool
		err     error
	)
	if cfg.AuditKeyCreate {
		ring, created, err = audit.LoadOrCreateKeys(cfg.AuditKey)
	} else {
		ring, err = audit.LoadKeys(cfg.AuditKey)
	}
	if errors.Is(err, audit.ErrNoKey) {
		return nil, fmt.Errorf("%w: create one with 'openssl rand -hex 32 > FILE' (mode 0600; every coordinator needs the same file), or set LETHE_AUDIT_KEY to its path", err)
	}
	if err != nil {
		return nil, err
	}
	fields := []zap.Field{zap.String("key_id", ring.Signing().ID()), zap.Strings("key_ids", ring.IDs()), zap.String("path", cfg.AuditKey)}
	if created {
		log.Warn("created a new audit key; every coordinator of this deployment must use the same file", fields...)
	} else {
		log.Info("audit key loaded", fields...)
	}
	return ring, nil
}

// newRecorder returns the lifecycle recorder: signing into the audit chain
// when there are keys.
func newRecorder(js jetstream.JetStream, keys *audit.KeyRing) *lifecycle.Recorder {
	if keys == nil {
		return lifecycle.NewRecorder(js)
	}
	return lifecycle.NewRecorder(js, lifecycle.WithAuditKey(keys.Signing()))
}

// auditVerifier serves GET /v1/audit/verify with the coordinator's keys,
// or nothing without keys.
func auditVerifier(js jetstream.JetStream, keys *audit.KeyRing) httpapi.AuditVerifier {
	if keys == nil {
		return nil
	}
	return audit.NewWalker(js, keys, "")
}
