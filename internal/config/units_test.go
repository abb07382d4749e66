package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"1s", time.Second},
		{"90s", 90 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"3d", 72 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"12h1d", 36 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{"1d1d", 48 * time.Hour},
		{"0", 0},
		{"-1d", -24 * time.Hour},
		{"+2h", 2 * time.Hour},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "1x", "d", "1", "1dd", "h1", "1.2.3d", "-", "1 d", "1D", "100000000d", "three days"} {
		got, err := ParseDuration(in)
		if err == nil {
			t.Errorf("ParseDuration(%q) = %v, want error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), quote(in)) {
			t.Errorf("ParseDuration(%q) error %q does not name the value", in, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"1GiB", 1 << 30},
		{"512MiB", 512 << 20},
		{"512 MiB", 512 << 20},
		{"100MB", 100_000_000},
		{"1.5GiB", 3 << 29},
		{"64kib", 64 << 10},
		{"2TiB", 2 << 40},
		{"10B", 10},
		{"1k", 1000},
		{"9223372036854775807", 1<<63 - 1},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1.5", "1XB", "1 G i B", "10000000TiB", "9223372036854775808", "1e9", "1..5MiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want error", in, got)
		}
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"HOME_DIR": "/home/x", "EMPTY": "", "A1": "a"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${HOME_DIR}/db", want: "/home/x/db"},
		{in: "${A1}${A1}", want: "aa"},
		{in: "x${EMPTY}y", want: "xy"},
		{in: "cost $$5 and $$${A1}", want: "cost $5 and $a"},
		{in: "lone $ and $x stay", want: "lone $ and $x stay"},
		{in: "trailing $", want: "trailing $"},
		{in: "${NOPE}", err: `environment variable NOPE is not set`},
		{in: "${A1", err: `unterminated ${`},
		{in: "${}", err: `invalid variable name ""`},
		{in: "${1A}", err: `invalid variable name "1A"`},
		{in: "${A-B}", err: `invalid variable name "A-B"`},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, lookup)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("expand(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
