package compact

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
)

// chainOf is contiguous one-transaction change sets from txid 2 of the
// given sizes.
func chainOf(sizes ...int64) []seg {
	out := make([]seg, len(sizes))
	for i, size := range sizes {
		txid := uint64(2 + i)
		out[i] = seg{Segment: layout.Segment{Key: layout.SegmentKey(txid, txid), First: txid, Last: txid, Size: size}}
	}
	return out
}

func shape(runs [][]seg) string {
	var s []string
	for _, r := range runs {
		var sizes []int64
		for _, x := range r {
			sizes = append(sizes, x.Size)
		}
		s = append(s, fmt.Sprint(sizes))
	}
	return fmt.Sprint(s)
}

func TestPack(t *testing.T) {
	for _, tc := range []struct {
		sizes  []int64
		target int64
		want   string
	}{
		{[]int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 4, "[[1 1 1 1] [1 1 1 1] [1 1]]"},
		{[]int64{1}, 4, "[]"},
		{[]int64{3, 2}, 100, "[]"},               // 3 is more than the rest
		{[]int64{10, 1, 1, 1}, 100, "[[1 1 1]]"}, // a merged one waits for its peers
		{[]int64{3, 2, 1}, 100, "[[3 2 1]]"},
		{[]int64{2, 1, 1, 3}, 5, "[[2 1 1]]"}, // 3 alone after the cut
	} {
		if got := shape(pack(chainOf(tc.sizes...), tc.target)); got != tc.want {
			t.Errorf("pack(%v, %d) = %s, want %s", tc.sizes, tc.target, got, tc.want)
		}
	}
}

// One small change set an hour, compacted every hour: a change set is
// merged again only once it would at least double, so the bytes rewritten
// grow as n log n, not n², and few change sets are left.
func TestPackRewritesLogarithmically(t *testing.T) {
	c := &compactor{o: Options{TargetBytes: 1 << 20, MinAge: -1}, skip: map[string]bool{}}
	var segs []seg
	var rewritten int64
	const hours = 1000
	for h := range hours {
		txid := uint64(2 + h)
		segs = append(segs, seg{Segment: layout.Segment{Key: layout.SegmentKey(txid, txid), First: txid, Last: txid, Size: 1}})
		for _, run := range c.runs(segs, 1, nil, time.Now()) {
			m := seg{Segment: layout.Segment{First: run[0].First, Last: run[len(run)-1].Last}}
			m.Key = layout.SegmentKey(m.First, m.Last)
			for _, s := range run {
				m.Size += s.Size
			}
			rewritten += m.Size
			var next []seg
			for _, s := range segs {
				if s.First < m.First || s.Last > m.Last {
					next = append(next, s)
				} else if s.First == m.First {
					next = append(next, m)
				}
			}
			segs = next
		}
	}
	if bound := int64(hours * math.Log2(hours)); rewritten > bound {
		t.Errorf("%d bytes rewritten for %d written, more than %d", rewritten, hours, bound)
	}
	if len(segs) > 2*int(math.Log2(hours))+2 {
		t.Errorf("%d change sets left of %d", len(segs), hours)
	}
	t.Logf("%d bytes rewritten for %d written; %d change sets left", rewritten, hours, len(segs))
}
