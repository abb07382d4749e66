package capture

import (
	"testing"
	"time"
)

// TestCommitMarksNeverUnderstateTheLag checks the bookkeeping behind the
// lag: the time found for a txid is never later than its commit, merging
// close commits overstates by less than markSpacing, a restart's seed goes
// before later marks, and trimming keeps what a lagging target needs.
func TestCommitMarksNeverUnderstateTheLag(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var c commitMarks
	if _, ok := c.committedAt(1); ok {
		t.Fatal("an empty set of marks knows a commit time")
	}
	// txid i commits at 10*i ms: marks are kept every markSpacing.
	for i := 1; i <= 100; i++ {
		c.add(uint64(i), at(10*i))
	}
	for i := 1; i <= 100; i++ {
		got, ok := c.committedAt(uint64(i))
		if !ok {
			t.Fatalf("txid %d: no time", i)
		}
		if got.After(at(10 * i)) {
			t.Fatalf("txid %d: %v is after its commit %v: the lag would be understated", i, got, at(10*i))
		}
		if at(10*i).Sub(got) >= markSpacing {
			t.Fatalf("txid %d: %v is %v before its commit", i, got, at(10*i).Sub(got))
		}
	}
	if n := len(c.m); n > 100*10/int(markSpacing/time.Millisecond)+1 {
		t.Fatalf("%d marks kept for 100 commits over 1s", n)
	}
	// A txid below every mark gets the oldest time known.
	if got, _ := c.committedAt(0); !got.Equal(at(10)) {
		t.Fatalf("txid 0: %v, want the oldest mark %v", got, at(10))
	}

	// Everybody holds txid 60: marks before the one that covers 61 go.
	c.trim(61)
	if got, _ := c.committedAt(61); got.After(at(610)) || at(610).Sub(got) >= markSpacing {
		t.Fatalf("after trim, txid 61 maps to %v", got)
	}
	if c.m[0].txid > 61 {
		t.Fatalf("trim dropped the mark that covers txid 61: first mark %d", c.m[0].txid)
	}

	// A restart seeds what a target waited for before it.
	var r commitMarks
	r.add(500, at(5000))
	r.seed(400, at(1000))
	if got, _ := r.committedAt(450); !got.Equal(at(1000)) {
		t.Fatalf("seeded txid 450 maps to %v, want %v", got, at(1000))
	}
	if got, _ := r.committedAt(500); !got.Equal(at(5000)) {
		t.Fatalf("txid 500 maps to %v, want %v", got, at(5000))
	}

	// Thinning under a long outage keeps the bound and never understates.
	var big commitMarks
	for i := 1; i <= maxMarks+10; i++ {
		big.add(uint64(i), at(i*int(markSpacing/time.Millisecond)))
	}
	if len(big.m) > maxMarks {
		t.Fatalf("%d marks kept, bound %d", len(big.m), maxMarks)
	}
	for _, i := range []int{1, 2, 3, maxMarks / 3, maxMarks} {
		if got, _ := big.committedAt(uint64(i)); got.After(at(i * int(markSpacing/time.Millisecond))) {
			t.Fatalf("after thinning, txid %d maps to %v, after its commit", i, got)
		}
	}
}
