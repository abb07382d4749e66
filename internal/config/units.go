package config

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a duration in Go syntax ("90s", "1h30m") that may
// also use "d" for days of 24 hours ("3d", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	invalid := errors.New("invalid duration " + quote(s))
	body, neg := strings.CutPrefix(s, "-")
	if !neg {
		body = strings.TrimPrefix(body, "+")
	}
	// No Go duration unit contains a 'd', so every 'd' ends a count of
	// days. Those are summed here; the rest goes to time.ParseDuration.
	var goPart strings.Builder
	var days float64
	sawDays := false
	for rest := body; rest != ""; {
		i := strings.IndexFunc(rest, func(r rune) bool { return !isNumRune(r) })
		if i == 0 {
			return 0, invalid
		}
		if i < 0 {
			goPart.WriteString(rest)
			break
		}
		j := len(rest)
		if k := strings.IndexFunc(rest[i:], isNumRune); k >= 0 {
			j = i + k
		}
		if rest[i:j] == "d" {
			f, err := strconv.ParseFloat(rest[:i], 64)
			if err != nil {
				return 0, invalid
			}
			days += f
			sawDays = true
		} else {
			goPart.WriteString(rest[:j])
		}
		rest = rest[j:]
	}
	var d time.Duration
	if goPart.Len() > 0 || !sawDays {
		var err error
		if d, err = time.ParseDuration(goPart.String()); err != nil {
			return 0, invalid
		}
	}
	if sawDays {
		extra := days * float64(24*time.Hour)
		if float64(d)+extra >= math.MaxInt64 {
			return 0, errors.New("duration " + quote(s) + " is too long")
		}
		d += time.Duration(extra)
	}
	if neg {
		d = -d
	}
	return d, nil
}

func isNumRune(r rune) bool { return r >= '0' && r <= '9' || r == '.' }

// ParseSize parses a byte count: plain bytes ("1048576") or a number with
// a decimal (kB, MB, GB, TB) or binary (KiB, MiB, GiB, TiB) unit, with or
// without a space and in any letter case ("1GiB", "512 MiB", "100MB").
func ParseSize(s string) (int64, error) {
	errInvalid := errors.New("invalid size " + quote(s) + "; use bytes or a unit such as 512MiB or 1GiB")
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, errInvalid
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, errInvalid
	}
	f, ok := new(big.Float).SetString(num)
	if !ok {
		return 0, errInvalid
	}
	f.Mul(f, new(big.Float).SetInt64(mult))
	if !f.IsInt() && mult == 1 {
		return 0, errInvalid
	}
	n, acc := f.Int64()
	if acc == big.Above || f.Cmp(new(big.Float).SetInt64(math.MaxInt64)) > 0 {
		return 0, errors.New("size " + quote(s) + " is too large")
	}
	return n, nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "m": 1000 * 1000, "mb": 1000 * 1000,
	"g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"t": 1000 * 1000 * 1000 * 1000, "tb": 1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// quote quotes a user's value for a message, shortened so that a pasted
// blob does not turn an error into a wall of text.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
