package restore

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferrydb/ferry/internal/layout"
)

// ErrEmpty means the replica holds nothing at all, which is also what a
// mistyped prefix or bucket looks like.
var ErrEmpty = errors.New("replica is empty: it holds no snapshot and no change set")

// ChainError is a replica holding txids that no restore reaches: past the
// newest restorable txid the chain of snapshot and change sets breaks, yet
// objects lie beyond the break. That is damage (an object was lost or
// deleted), unlike a gap ferry recorded when it dropped change sets: there
// a newer snapshot starts a new chain, and the newest txid held restores.
type ChainError struct {
	// Proven is the newest txid a restore reaches; 0 when none is.
	Proven uint64
	// Newest is the newest txid that any object of the replica holds.
	Newest uint64
	// Missing are the txids right after Proven that no object holds; nil
	// when an object holds them but cannot be used, or when Proven is 0.
	Missing *Range
	// Next is the first object past the break; Why is set when it is one
	// of the catalog's Unusable objects, and says what is wrong with it.
	Next, Why string
}

func (e *ChainError) Error() string {
	var b strings.Builder
	switch {
	case e.Proven == 0:
		fmt.Fprintf(&b, "no snapshot to restore from: the replica holds change sets up to txid %d but no usable snapshot they apply to", e.Newest)
	case e.Missing != nil && e.Missing.First == e.Missing.Last:
		fmt.Fprintf(&b, "txid %d is missing: no object holds it, yet the replica holds objects up to txid %d past it", e.Missing.First, e.Newest)
	case e.Missing != nil:
		fmt.Fprintf(&b, "txids %d-%d are missing: no object holds them, yet the replica holds objects up to txid %d past them", e.Missing.First, e.Missing.Last, e.Newest)
	default:
		fmt.Fprintf(&b, "no restore reaches past txid %d, yet the replica holds objects up to txid %d", e.Proven, e.Newest)
	}
	if e.Why != "" {
		fmt.Fprintf(&b, "; %s is unusable: %s", e.Next, e.Why)
	}
	return b.String()
}

// Empty reports whether the replica holds no object of ferry's at all.
func (c Catalog) Empty() bool {
	return len(c.Snapshots) == 0 && len(c.Segments) == 0 && len(c.Unusable) == 0
}

// Latest returns the newest txid a restore reaches; 0 when none is.
func (c Catalog) Latest() uint64 {
	var latest uint64
	for _, r := range c.Ranges() {
		latest = max(latest, r.Last)
	}
	return latest
}

// Newest returns the newest txid that any object of the replica holds,
// usable or not; 0 when the replica is empty.
func (c Catalog) Newest() uint64 {
	var n uint64
	for _, s := range c.Snapshots {
		n = max(n, s.TXID)
	}
	for _, s := range c.Segments {
		n = max(n, s.Last)
	}
	for _, u := range c.Unusable {
		n = max(n, u.Last)
	}
	return n
}

// Stranded returns the runs of txids that objects hold past the newest
// restorable txid, merged and in order: what a break in the chain cuts
// off. It is empty when the newest txid held restores. Change sets left
// in a recorded gap, before a newer snapshot, are not stranded: nothing
// newer than what restores depends on them.
func (c Catalog) Stranded() []Range {
	latest := c.Latest()
	var rs []Range
	add := func(first, last uint64) {
		if last > latest {
			rs = append(rs, Range{First: max(first, latest+1), Last: last})
		}
	}
	// A usable snapshot past latest cannot exist: it would start a range.
	for _, s := range c.Segments {
		add(s.First, s.Last)
	}
	for _, u := range c.Unusable {
		add(u.First, u.Last)
	}
	return mergeRanges(rs)
}

func mergeRanges(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int { return cmpU64(a.First, b.First) })
	var merged []Range
	for _, r := range rs {
		if n := len(merged); n > 0 && r.First <= merged[n-1].Last+1 {
			merged[n-1].Last = max(merged[n-1].Last, r.Last)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// Check reports whether the newest txid the replica holds restores: nil
// if it does, ErrEmpty when the replica holds nothing, and a *ChainError
// saying where the chain breaks otherwise.
func (c Catalog) Check() error {
	if c.Empty() {
		return ErrEmpty
	}
	st := c.Stranded()
	if len(st) == 0 {
		return nil
	}
	e := &ChainError{Proven: c.Latest(), Newest: st[len(st)-1].Last}
	first := st[0].First
	if e.Proven > 0 && first > e.Proven+1 {
		e.Missing = &Range{First: e.Proven + 1, Last: first - 1}
	}
	for _, s := range c.Segments {
		if max(s.First, e.Proven+1) == first && e.Next == "" {
			e.Next = s.Key
		}
	}
	for _, u := range c.Unusable {
		if max(u.First, e.Proven+1) == first {
			e.Next, e.Why = u.Key, u.Why
			break
		}
	}
	if e.Proven == 0 && e.Why == "" {
		// Nothing restores because no snapshot does: name a damaged
		// manifest if there is one, since that is the object at fault.
		for _, u := range c.Unusable {
			if _, err := layout.ParseManifestKey(u.Key); err == nil {
				e.Next, e.Why = u.Key, u.Why
				break
			}
		}
	}
	return e
}

// stopAt wraps a *ChainError found while planning as a StoppedError at the
// last provable txid, when there is one, so that callers handle a plan
// that cannot reach its target like a restore that stopped short.
func stopAt(err error) error {
	var ce *ChainError
	if errors.As(err, &ce) && ce.Proven > 0 {
		return &StoppedError{TXID: ce.Proven, Err: err}
	}
	return err
}
