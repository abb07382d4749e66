package compact

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
)

// Defaults for Options.
const (
	// DefaultTargetBytes is the capture's own bound on a change set: a
	// merged one costs a restore no more than the biggest a busy database
	// ships anyway.
	DefaultTargetBytes = 16 << 20
	// DefaultMinAge leaves alone the change sets of the last few minutes,
	// which the replicator has only just written and readers following
	// the replica are most likely still to fetch.
	DefaultMinAge = 10 * time.Minute
)

// maxRunTxns bounds the transactions of a merged change set as the
// capture bounds a batch's: a restore decodes a whole change set even to
// stop at its first transaction.
const maxRunTxns = 100_000

// Options configure a run.
type Options struct {
	// TargetBytes is the most a merged change set holds, by the listed
	// sizes of the change sets it replaces; change sets of half of it or
	// more are not merged. Zero means DefaultTargetBytes.
	TargetBytes int64
	// MinAge is how old, by modification time, a change set must be to be
	// merged. Zero means DefaultMinAge; a negative value merges change
	// sets of any age, for a replica nobody writes to any more.
	MinAge time.Duration
	// TempDir holds the change sets of the run being merged, about twice
	// TargetBytes at most. Empty means the system's temporary directory.
	TempDir string
	// DryRun reports what would be merged and deleted, reading nothing
	// but the listing and writing nothing.
	DryRun bool
	Log    *slog.Logger
}

// Merged is a change set compaction wrote (with DryRun: would write).
type Merged struct {
	Key   string `json:"key"`
	First uint64 `json:"first_txid"`
	Last  uint64 `json:"last_txid"`
	// Size is the merged change set's size; with DryRun, the sum of the
	// listed sizes of the ones it would replace.
	Size int64 `json:"size"`
	// Replaces is how many change sets it holds the transactions of.
	Replaces int `json:"replaces"`
}

// Object is a change set compaction deleted, or would delete.
type Object struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// Damaged is a change set compaction left alone because it fails its
// checks or disagrees with a change set covering the same txids.
type Damaged struct {
	Key string `json:"key"`
	Why string `json:"why"`
}

// Report says what a run found and did.
type Report struct {
	Merged []Merged `json:"merged"`
	// Deleted are change sets whose every transaction a longer one holds,
	// read back intact; with DryRun, the ones that would go if they do.
	Deleted []Object `json:"deleted"`
	Bytes   int64    `json:"bytes"`
	// Damaged needs an operator: nothing restores the worse for it as
	// long as the change sets beside it hold its txids (verify says
	// whether they do), but compaction will not touch it.
	Damaged []Damaged `json:"damaged"`
	DryRun  bool      `json:"dry_run"`
}

// seg is a change set as listed, with its modification time.
type seg struct {
	layout.Segment
	modified time.Time
}

func (s seg) txns() uint64 { return s.Last - s.First + 1 }

// Run compacts the replica in store once. An error ends the run where it
// happened; whatever it left is consistent, and the next run carries on.
func Run(ctx context.Context, store objstore.Store, o Options) (Report, error) {
	if o.TargetBytes <= 0 {
		o.TargetBytes = DefaultTargetBytes
	}
	if o.MinAge == 0 {
		o.MinAge = DefaultMinAge
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	// Lists, even when empty, for the JSON a command prints.
	rep := Report{Merged: []Merged{}, Deleted: []Object{}, Damaged: []Damaged{}, DryRun: o.DryRun}
	c := &compactor{store: store, o: o, rep: rep, skip: map[string]bool{}}
	rec := &recorder{store: store, modified: map[string]time.Time{}}
	l, err := layout.Read(ctx, rec, layout.Snapshots|layout.Segments, segment.Heads(store))
	if err != nil {
		return c.rep, fmt.Errorf("compact: %w", err)
	}
	if len(l.Snapshots) == 0 {
		return c.rep, nil // nothing restores yet: nothing is worth merging
	}
	segs := make([]seg, len(l.Segments))
	for i, s := range l.Segments {
		segs[i] = seg{Segment: s, modified: rec.modified[s.Key]}
	}
	dir, err := os.MkdirTemp(o.TempDir, "ferry-compact-*")
	if err != nil {
		return c.rep, fmt.Errorf("compact: %w", err)
	}
	defer os.RemoveAll(dir)
	c.dir = dir

	// Overlaps first: the change sets a longer one covers go, and only
	// then is it clear which change sets runs may use.
	covers, rest := contained(segs)
	for _, g := range covers {
		if err := c.settle(ctx, g.cover, g.within); err != nil {
			return c.rep, err
		}
	}
	snaps := make(map[uint64]bool, len(l.Snapshots))
	for _, s := range l.Snapshots {
		snaps[s.TXID] = true
	}
	for _, run := range c.runs(rest, l.Snapshots[0].TXID, snaps, time.Now()) {
		if err := c.merge(ctx, run); err != nil {
			return c.rep, err
		}
	}
	return c.rep, nil
}

type compactor struct {
	store objstore.Store
	o     Options
	dir   string
	rep   Report
	// skip are change sets runs must leave out: damaged ones, and longer
	// ones that change sets within them could not be settled against.
	skip map[string]bool
}

// group is a change set and those lying wholly within its txid range.
type group struct {
	cover  seg
	within []seg
}

// contained splits segs into groups of change sets that lie within a
// longer one, each with that longer one, and the change sets within no
// other.
func contained(segs []seg) ([]group, []seg) {
	// By first txid, the longest first: each change set then lies within
	// another exactly when one before it reaches at least as far, and the
	// first that reaches furthest lies within none.
	slices.SortFunc(segs, func(a, b seg) int {
		return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(b.Last, a.Last))
	})
	var groups []group
	at := map[int]int{} // index in segs of a cover to its index in groups
	within := make([]bool, len(segs))
	top := -1 // the change set reaching furthest so far
	for i, s := range segs {
		if top >= 0 && segs[top].Last >= s.Last {
			g, ok := at[top]
			if !ok {
				g = len(groups)
				at[top] = g
				groups = append(groups, group{cover: segs[top]})
			}
			groups[g].within = append(groups[g].within, s)
			within[i] = true
			continue
		}
		top = i
	}
	// Covers stay in rest: one that overlaps nothing else once its group
	// is settled may join a run.
	var rest []seg
	for i, s := range segs {
		if !within[i] {
			rest = append(rest, s)
		}
	}
	return groups, rest
}

// runs returns the runs to merge from segs (change sets no other contains),
// by the rules in the package documentation: after txid oldest (the oldest
// snapshot), small, old enough by now, overlapping nothing, contiguous, not
// across a snapshot in snaps, packed to the target.
func (c *compactor) runs(segs []seg, oldest uint64, snaps map[uint64]bool, now time.Time) [][]seg {
	slices.SortFunc(segs, func(a, b seg) int { return cmp.Compare(a.First, b.First) })
	reach := uint64(0) // the furthest txid the change sets before i reach
	eligible := func(i int) bool {
		s := segs[i]
		overlaps := i > 0 && reach >= s.First || i+1 < len(segs) && segs[i+1].First <= s.Last
		return s.First > oldest && !overlaps && !c.skip[s.Key] &&
			s.Size < c.o.TargetBytes/2 &&
			(c.o.MinAge < 0 || !s.modified.IsZero() && now.Sub(s.modified) >= c.o.MinAge)
	}
	var out [][]seg
	var chain []seg
	end := func() {
		out = append(out, pack(chain, c.o.TargetBytes)...)
		chain = nil
	}
	for i, s := range segs {
		ok := eligible(i)
		reach = max(reach, s.Last)
		if !ok {
			end()
			continue
		}
		if n := len(chain); n > 0 && (s.First != chain[n-1].Last+1 || snaps[chain[n-1].Last]) {
			end()
		}
		chain = append(chain, s)
	}
	end()
	return out
}

// pack cuts a contiguous chain into runs of at most target bytes and
// maxRunTxns transactions, oldest first, and drops from the front of each
// a change set bigger than the rest of it together (see the package
// documentation). Only runs of two or more change sets remain.
func pack(chain []seg, target int64) [][]seg {
	var out [][]seg
	var cur []seg
	var size int64
	var txns uint64
	flush := func() {
		for len(cur) >= 2 {
			var rest int64
			for _, s := range cur[1:] {
				rest += s.Size
			}
			if cur[0].Size <= rest {
				break
			}
			cur = cur[1:]
		}
		if len(cur) >= 2 {
			out = append(out, cur)
		}
		cur, size, txns = nil, 0, 0
	}
	for _, s := range chain {
		if len(cur) > 0 && (size+s.Size > target || txns+s.txns() > maxRunTxns) {
			flush()
		}
		cur = append(cur, s)
		size += s.Size
		txns += s.txns()
	}
	flush()
	return out
}

// deleteAll deletes objs, recording them.
func (c *compactor) deleteAll(ctx context.Context, objs []seg) error {
	for batch := range slices.Chunk(objs, 1000) {
		keys := make([]string, len(batch))
		for i, s := range batch {
			keys[i] = s.Key
		}
		if !c.o.DryRun {
			if err := c.store.Delete(ctx, keys...); err != nil {
				return fmt.Errorf("compact: delete: %w", err)
			}
		}
		for _, s := range batch {
			c.rep.Deleted = append(c.rep.Deleted, Object{Key: s.Key, Size: s.Size})
			c.rep.Bytes += s.Size
		}
	}
	return nil
}

func (c *compactor) damaged(key string, err error) {
	c.skip[key] = true
	c.o.Log.Warn("compact: leaving a change set alone", "key", key, "err", err)
	c.rep.Damaged = append(c.rep.Damaged, Damaged{Key: key, Why: err.Error()})
}

// gone reports whether err means the object went away since the listing:
// another compaction or gc deleted it.
func gone(err error) bool { return objstore.IsNotFound(err) }

// isDamage reports whether err is the object's own fault rather than the
// store's or the network's: retrying would read the same bytes.
func isDamage(err error) bool {
	return errors.Is(err, objstore.ErrCorrupt) || errors.Is(err, errDiffer)
}

// recorder passes a store's listing to layout.Read, which parses it, and
// keeps each object's modification time, which a layout.Segment does not
// carry.
type recorder struct {
	store    layout.Lister
	modified map[string]time.Time
}

func (r *recorder) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) {
		for info, err := range r.store.List(ctx, prefix) {
			if err == nil {
				r.modified[info.Key] = info.Modified
			}
			if !yield(info, err) {
				return
			}
		}
	}
}
