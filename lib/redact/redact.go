// Package redact holds personal values in a type that cannot leak them by
// accident: its fmt, JSON and zap forms print a fixed placeholder. Code that
// needs the value calls Reveal, which is easy to find in review.
package redact

import (
	"log/slog"

	"go.uber.org/zap/zapcore"
)

// Placeholder is what a redacted value prints as.
const Placeholder = "[redacted]"

// String is a personal value (an e-mail address, a name, a postal address).
type String struct{ v string }

// New wraps a personal value.
func New(v string) String { return String{v: v} }

// Reveal returns the personal value. Never pass it to a logger, a metric,
// an event or an error message.
func (s String) Reveal() string { return s.v }

// String implements fmt.Stringer with the placeholder.
func (s String) String() string { return Placeholder }

// GoString implements fmt.GoStringer with the placeholder, for %#v.
func (s String) GoString() string { return Placeholder }

// MarshalJSON prints the placeholder.
func (s String) MarshalJSON() ([]byte, error) { return []byte(`"` + Placeholder + `"`), nil }

// MarshalText prints the placeholder.
func (s String) MarshalText() ([]byte, error) { return []byte(Placeholder), nil }

// LogValue implements slog.LogValuer with the placeholder.
func (s String) LogValue() slog.Value { return slog.StringValue(Placeholder) }

// MarshalLogObject keeps the value out of zap's reflection-based encoders.
func (s String) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("value", Placeholder)
	return nil
}
