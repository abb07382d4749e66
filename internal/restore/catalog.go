// Package restore rebuilds a database from what a replica holds: the newest
// snapshot at or before the wanted transaction, then the contiguous change
// sets after it, applied one transaction at a time. It plans from listings
// alone, verifies every object before a byte of it reaches the output, and
// writes the output only after SQLite itself has checked the result.
package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// SegmentRef is a change set as listed: its key, its txid range and size.
type SegmentRef = layout.Segment

// Catalog is what a replica holds, from its listings.
type Catalog struct {
	Snapshots []snapshot.ManifestInfo
	Segments  []SegmentRef // sorted by First, then Last
	// Unusable are objects that hold txids but that no restore can start
	// from or pass through: manifests whose headers fail their checks, and
	// whatever a deeper check ruled out (see Without). They still count as
	// held. Were they dropped, a replica whose newest snapshot is damaged
	// would pass an older state off as its latest.
	Unusable []Unusable
	// Breaks are the txids at which a chain of change sets ended and a
	// snapshot took the database on: each folds in commits the
	// replicator could not read, so no restore stops between them.
	Breaks []uint64
}

// Unusable is an object that holds txids First..Last (a manifest: its
// txid) but cannot be used, and why.
type Unusable struct {
	Key   string `json:"key"`
	First uint64 `json:"first_txid"`
	Last  uint64 `json:"last_txid"`
	Why   string `json:"why"`
	// err is what made a manifest unusable, when reading it failed.
	err error
}

// ReadCatalog lists a replica's snapshots and segments, and reads each
// manifest's header. Objects whose keys name nothing of ferry's play no
// part in a restore; verify names them.
func ReadCatalog(ctx context.Context, store objstore.Store) (Catalog, error) {
	l, err := layout.Read(ctx, store, layout.Snapshots|layout.Segments, segment.Heads(store))
	if err != nil {
		return Catalog{}, err
	}
	snaps, err := snapshot.Describe(ctx, store, l.Snapshots)
	if err != nil {
		return Catalog{}, err
	}
	c := NewCatalog(snaps, l.Segments)
	for _, b := range l.Breaks {
		c.Breaks = append(c.Breaks, b.TXID)
	}
	for _, f := range l.Foreign {
		// A change set of ours whose header did not open holds txids
		// from the first its key names; saying which lets a restore
		// that stops there name it.
		if first, err := layout.ParseChangeSetKey(f.Key); err == nil && f.Err != nil {
			c.Unusable = append(c.Unusable, Unusable{Key: f.Key, First: first, Last: first, Why: f.Why, err: f.Err})
		}
	}
	return c, nil
}

// NewCatalog is the catalog of a replica holding snaps and segs, for a
// caller that has listed the replica already.
func NewCatalog(snaps []snapshot.ManifestInfo, segs []layout.Segment) Catalog {
	c := Catalog{Segments: slices.Clone(segs)}
	for _, s := range snaps {
		if s.Err != nil {
			c.Unusable = append(c.Unusable, Unusable{Key: s.Key, First: s.TXID, Last: s.TXID, Why: s.Err.Error(), err: s.Err})
			continue
		}
		c.Snapshots = append(c.Snapshots, s)
	}
	slices.SortFunc(c.Segments, cmpSegments)
	slices.SortFunc(c.Snapshots, func(a, b snapshot.ManifestInfo) int { return cmp.Compare(a.TXID, b.TXID) })
	return c
}

// Without returns the catalog with the objects named in bad (key to
// reason) moved to Unusable: a check that found them missing or damaged
// then plans, and counts what is restorable, as a restore would find it.
func (c Catalog) Without(bad map[string]string) Catalog {
	out := Catalog{Unusable: slices.Clone(c.Unusable)}
	for _, s := range c.Snapshots {
		if why, ok := bad[s.Key]; ok {
			out.Unusable = append(out.Unusable, Unusable{Key: s.Key, First: s.TXID, Last: s.TXID, Why: why})
			continue
		}
		out.Snapshots = append(out.Snapshots, s)
	}
	for _, s := range c.Segments {
		if why, ok := bad[s.Key]; ok {
			out.Unusable = append(out.Unusable, Unusable{Key: s.Key, First: s.First, Last: s.Last, Why: why})
			continue
		}
		out.Segments = append(out.Segments, s)
	}
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// chain returns the segments that carry a database from after txid from
// as far forward as they reach contiguously, stopping at to (0 means no
// limit), and the last txid reached. Segments may overlap: a change set
// captured again after a crash, or the small change sets that compaction
// merged into one and has not deleted yet (or could not, being killed).
// At each step the one reaching furthest is taken, which makes the chain
// the shortest; among those, the one starting latest, which downloads the
// fewest transactions that are skipped. Greedy is enough: a segment that
// reaches further never leaves a txid uncovered that a shorter one would
// have covered.
func (c Catalog) chain(from, to uint64) ([]SegmentRef, uint64) {
	segs := c.sortedSegments()
	// furthest[i] is the index, among segs[:i+1] (every segment starting
	// at or before segs[i].First), of the one that reaches furthest. A
	// replica holds a change set per sync interval, thousands a day, so a
	// scan of every segment at every step would make planning quadratic.
	furthest := make([]int, len(segs))
	for i := range segs {
		if i > 0 && segs[furthest[i-1]].Last > segs[i].Last {
			furthest[i] = furthest[i-1]
		} else {
			furthest[i] = i
		}
	}
	var out []SegmentRef
	reached := from
	for to == 0 || reached < to {
		next := reached + 1
		n, _ := slices.BinarySearchFunc(segs, next, func(s SegmentRef, t uint64) int {
			if s.First <= t {
				return -1
			}
			return 1
		})
		if n == 0 {
			break
		}
		best := segs[furthest[n-1]]
		if best.Last < next {
			break
		}
		out = append(out, best)
		reached = best.Last
	}
	if to != 0 && reached > to {
		reached = to
	}
	return out, reached
}

// sortedSegments returns the segments in the order NewCatalog sorts them
// in, copying them only when a caller built the catalog otherwise.
func (c Catalog) sortedSegments() []SegmentRef {
	if slices.IsSortedFunc(c.Segments, cmpSegments) {
		return c.Segments
	}
	segs := slices.Clone(c.Segments)
	slices.SortFunc(segs, cmpSegments)
	return segs
}

func cmpSegments(a, b SegmentRef) int {
	return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
}

// covered returns the runs of txids that segments hold, merged where they
// overlap or touch. A chain from txid x reaches exactly to the end of the
// run holding x+1: every txid in between is held by some segment, and
// that is all a chain needs.
func (c Catalog) covered() []Range {
	rs := make([]Range, len(c.Segments))
	for i, s := range c.Segments {
		rs[i] = Range{First: s.First, Last: s.Last}
	}
	return mergeRanges(rs)
}

// reach returns how far a chain of segments carries a database from after
// txid from, given the runs covered returns.
func reach(cov []Range, from uint64) uint64 {
	i, found := slices.BinarySearchFunc(cov, from+1, func(r Range, t uint64) int {
		switch {
		case r.Last < t:
			return -1
		case r.First > t:
			return 1
		}
		return 0
	})
	if !found {
		return from
	}
	return cov[i].Last
}

// Range is a run of txids that can each be restored.
type Range struct {
	First uint64 `json:"first_txid"`
	Last  uint64 `json:"last_txid"`
}

// Ranges returns the restorable txid ranges, merged and in order: every
// txid from a snapshot to as far as segments reach after it. The spaces
// between ranges are the gaps in point-in-time coverage.
func (c Catalog) Ranges() []Range {
	cov := c.covered()
	var rs []Range
	for _, s := range c.Snapshots {
		rs = append(rs, Range{First: s.TXID, Last: reach(cov, s.TXID)})
	}
	return mergeRanges(rs)
}

// Plan is the objects a restore reads, in order.
type Plan struct {
	Snapshot snapshot.ManifestInfo `json:"snapshot"`
	Segments []SegmentRef          `json:"segments"`
	// TXID is the transaction the restored database ends at.
	TXID uint64 `json:"txid"`

	// broken is set when the plan's chain ends where the replica's chain
	// breaks, with objects past the break: a restore by time that runs
	// out of change sets there cannot tell whether the transaction it
	// wants lies beyond.
	broken error
}

// ErrNoSnapshot means the replica holds nothing to restore: no snapshot,
// and no change set either.
var ErrNoSnapshot = fmt.Errorf("replica holds no snapshot")

// PlanTXID plans a restore to exactly txid; 0 means the latest, which
// must be the newest txid the replica holds: a replica whose chain breaks
// with objects past the break fails with a StoppedError (or, when nothing
// restores, a *ChainError) rather than offering the state before the break
// as its latest. Among the snapshots that reach the target it takes the
// newest, which makes the chain of segments to apply the shortest.
func (c Catalog) PlanTXID(txid uint64) (Plan, error) {
	if c.Empty() {
		return Plan{}, ErrNoSnapshot
	}
	broken := c.Check()
	if txid == 0 {
		if broken != nil {
			return Plan{}, stopAt(broken)
		}
		txid = c.Latest()
	}
	for i := len(c.Snapshots) - 1; i >= 0; i-- {
		s := c.Snapshots[i]
		if s.TXID > txid {
			continue
		}
		segs, reach := c.chain(s.TXID, txid)
		if reach == txid {
			return Plan{Snapshot: s, Segments: segs, TXID: txid}, nil
		}
	}
	if broken != nil && txid <= c.Newest() && txid > c.Latest() {
		return Plan{}, stopAt(fmt.Errorf("txid %d is not restorable: %w", txid, broken))
	}
	// The newest snapshot that could have reached txid but needs a key
	// the reader lacks (the old key of a rotation) says why.
	for i := len(c.Unusable) - 1; i >= 0; i-- {
		if u := c.Unusable[i]; u.First <= txid && errors.Is(u.err, objstore.ErrKey) {
			return Plan{}, fmt.Errorf("txid %d is not restorable with the keys given (restorable: %s): %w", txid, formatRanges(c.Ranges()), u.err)
		}
	}
	return Plan{}, fmt.Errorf("txid %d is not restorable from this replica; restorable: %s", txid, formatRanges(c.Ranges()))
}

func formatRanges(rs []Range) string {
	if len(rs) == 0 {
		return "nothing"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d-%d", r.First, r.Last)
	}
	return strings.Join(parts, ", ")
}

// PlanTime plans a restore to the last transaction committed at or before
// t. Listings carry no per-transaction times, so the plan reaches as far as
// the segments go from the newest snapshot taken at or before t, and
// Options.Before set to t stops the restore at the right transaction.
func (c Catalog) PlanTime(t time.Time) (Plan, error) {
	if c.Empty() {
		return Plan{}, ErrNoSnapshot
	}
	broken := c.Check()
	if len(c.Snapshots) == 0 {
		return Plan{}, broken
	}
	for i := len(c.Snapshots) - 1; i >= 0; i-- {
		s := c.Snapshots[i]
		if s.Time.After(t) {
			continue
		}
		segs, reach := c.chain(s.TXID, 0)
		p := Plan{Snapshot: s, Segments: segs, TXID: reach}
		if broken != nil && reach == c.Latest() {
			p.broken = broken
		}
		return p, nil
	}
	return Plan{}, fmt.Errorf("no snapshot was taken at or before %s; the oldest is from %s",
		t.Format(time.RFC3339), c.Snapshots[0].Time.Format(time.RFC3339))
}
