package config

import (
	"fmt"
	"log/slog"
)

const redacted = "[redacted]"

// Secret holds a credential. Every way Go prints or encodes a value (fmt
// with any verb, encoding/json, YAML, log/slog) shows "[redacted]"; only
// Reveal returns the credential.
//
// Secret is a struct around a pointer rather than a string type on
// purpose. fmt prints a string type's raw contents whenever it reports a
// bad verb, and reflection-based dumpers print it directly:
// fmt.Sprintf("%p", cfg) on a struct holding a string-kinded secret shows
// the secret. A pointer is printed as an address in all of those paths.
type Secret struct {
	s *string
}

// NewSecret wraps a credential.
func NewSecret(s string) Secret { return Secret{s: &s} }

// Reveal returns the credential, or "" for the zero Secret. Call it only
// where the credential is handed to the code that uses it.
func (s Secret) Reveal() string {
	if s.s == nil {
		return ""
	}
	return *s.s
}

// IsZero reports whether no credential is set.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

// Equal reports whether two secrets hold the same credential. go-cmp uses
// it, so tests can compare configs without looking inside.
func (s Secret) Equal(o Secret) bool { return s.Reveal() == o.Reveal() }

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer, for %#v.
func (Secret) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb, including the ones a
// string would not accept (%d, %x), prints the placeholder.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalText implements encoding.TextMarshaler, which encoding/json and
// YAML encoders use.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
