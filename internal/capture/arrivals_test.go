package capture

import (
	"testing"
	"time"
)

// steadyArrivals returns arrivals that saw n commits gap apart.
func steadyArrivals(n int, gap time.Duration) *arrivals {
	var a arrivals
	at := budgetT0
	for range n {
		a.add(at)
		at = at.Add(gap)
	}
	return &a
}

func TestArrivalsWorthHolding(t *testing.T) {
	const iv = time.Second
	window := iv / holdWindow
	for _, c := range []struct {
		name    string
		a       *arrivals
		pending int
		age     time.Duration
		want    bool
	}{
		// Commits every 700ms, the last 650ms ago: the next is 50ms off.
		{"steady, next close", steadyArrivals(40, 700*time.Millisecond), 1, 650 * time.Millisecond, true},
		// The next is 400ms off, past the window.
		{"steady, next past the window", steadyArrivals(40, 700*time.Millisecond), 1, 300 * time.Millisecond, false},
		// Too few gaps seen to say anything.
		{"too few gaps", steadyArrivals(holdMinGaps, 700*time.Millisecond), 1, 650 * time.Millisecond, false},
		{"enough gaps", steadyArrivals(holdMinGaps+1, 700*time.Millisecond), 1, 650 * time.Millisecond, true},
		// No gap seen was as long as the quiet since the last commit.
		{"quiet longer than any gap", steadyArrivals(40, 700*time.Millisecond), 1, 2 * time.Second, false},
		// 50ms more for each of 30 commits costs more than it saves one.
		{"many pending", steadyArrivals(40, 700*time.Millisecond), 30, 650 * time.Millisecond, false},
		{"no pending", steadyArrivals(40, 700*time.Millisecond), 0, 650 * time.Millisecond, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.a.worthHolding(c.pending, c.age, window, iv, holdGain); got != c.want {
				t.Fatalf("worthHolding(%d pending, %v since the last commit) = %v, want %v", c.pending, c.age, got, c.want)
			}
		})
	}
	// A token that fell due more than the window ago leaves no time to hold.
	if steadyArrivals(40, 700*time.Millisecond).worthHolding(1, 650*time.Millisecond, 0, iv, holdGain) {
		t.Fatal("held with no window left")
	}
}

// TestArrivalsKeepTheLatestGaps checks that the gaps seen long ago give
// way: after a pace change, only the new pace is looked at.
func TestArrivalsKeepTheLatestGaps(t *testing.T) {
	a := steadyArrivals(100, 700*time.Millisecond)
	at := a.last
	for range arrivalGaps {
		at = at.Add(5 * time.Second)
		a.add(at)
	}
	// At the old pace the next commit would be 50ms off; at the new one
	// it is 4.35s off.
	if a.worthHolding(1, 650*time.Millisecond, time.Second/holdWindow, time.Second, holdGain) {
		t.Fatal("held for a commit at a pace the last gaps no longer show")
	}
	if a.n != arrivalGaps {
		t.Fatalf("%d gaps kept, want %d", a.n, arrivalGaps)
	}
}
