// Package logging builds the one zap logger a Lethe process passes down:
// JSON in production, human-readable console output in development. Log
// lines carry ids, never personal data; see package redact for values that
// must not be printed.
package logging

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Format selects the encoding of log lines.
type Format string

// Formats.
const (
	FormatJSON    Format = "json"
	FormatConsole Format = "console"
)

// New returns a logger for the service name in the given format and level
// ("debug", "info", "warn", "error").
func New(service string, format Format, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("parse log level %q (want debug, info, warn or error): %w", level, err)
	}
	var cfg zap.Config
	switch format {
	case FormatJSON, "":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "time"
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	case FormatConsole:
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("unknown log format %q (want json or console)", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	logger, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return logger.With(zap.String("service", service)), nil
}
