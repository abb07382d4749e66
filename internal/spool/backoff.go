package spool

import "time"

// Backoff spaces the retries of a failing entry: after its n-th failure an
// entry waits a uniformly random time in (0, min(Max, Base·2^(n-1))]. The
// randomness ("full jitter") keeps many entries that failed together, when
// the store went down, from all retrying in the same instant when it comes
// back.
type Backoff struct {
	Base time.Duration // default 1s
	Max  time.Duration // default 5m
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Minute
	}
	b.Max = max(b.Max, b.Base)
	return b
}

// Ceiling returns the longest wait after the attempts-th failure.
func (b Backoff) Ceiling(attempts int) time.Duration {
	b = b.withDefaults()
	d := b.Base
	for i := 1; i < attempts && d < b.Max; i++ {
		if d > b.Max/2 {
			return b.Max // doubling would pass Max, or overflow
		}
		d *= 2
	}
	return min(d, b.Max)
}

// delay draws the wait after the attempts-th failure; jitter returns a
// number in [1, n].
func (b Backoff) delay(attempts int, jitter func(n int64) int64) time.Duration {
	return time.Duration(jitter(int64(b.Ceiling(attempts))))
}
