package layout_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/segment"
)

// segmentBytes encodes a change set of empty transactions first..last.
func segmentBytes(t *testing.T, first, last uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{PageSize: 512, First: first, Last: last})
	if err != nil {
		t.Fatal(err)
	}
	for txid := first; txid <= last; txid++ {
		if err := w.Begin(txid, time.Unix(1, 0), 1); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func putBytes(t *testing.T, s objstore.Store, key string, b []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(b), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A first-only key says only where a change set starts; the listing must
// still give its exact last txid, from the header, and must not trust an
// object whose header is missing, damaged, or names another txid.
func TestReadResolvesFirstOnlyKeys(t *testing.T) {
	s := memstore.New()
	putBytes(t, s, layout.SegmentKey(2, 4), segmentBytes(t, 2, 4))
	putBytes(t, s, layout.ChangeSetKey(5), segmentBytes(t, 5, 9))
	putBytes(t, s, layout.ChangeSetKey(10), segmentBytes(t, 10, 10))
	putBytes(t, s, layout.ChangeSetKey(11), segment.MarshalBreak(11))

	flipped := segmentBytes(t, 20, 22)
	flipped[17] ^= 1 // in the first txid: the header's checksum fails
	putBytes(t, s, layout.ChangeSetKey(20), flipped)
	putBytes(t, s, layout.ChangeSetKey(30), segmentBytes(t, 31, 33)) // header disagrees with key
	putBytes(t, s, layout.ChangeSetKey(40), []byte("short"))
	putBytes(t, s, layout.ChangeSetKey(50), bytes.Repeat([]byte("x"), 64))
	putBytes(t, s, layout.ChangeSetKey(60), segment.MarshalBreak(61)) // marker under another txid

	l, err := layout.Read(context.Background(), s, layout.Segments, segment.Heads(s))
	if err != nil {
		t.Fatal(err)
	}
	wantSegs := []layout.Segment{
		{Key: layout.SegmentKey(2, 4), First: 2, Last: 4},
		{Key: layout.ChangeSetKey(5), First: 5, Last: 9},
		{Key: layout.ChangeSetKey(10), First: 10, Last: 10},
	}
	if !slices.EqualFunc(l.Segments, wantSegs, func(a, b layout.Segment) bool {
		return a.Key == b.Key && a.First == b.First && a.Last == b.Last && a.Size > 0
	}) {
		t.Errorf("Segments = %+v\nwant %+v", l.Segments, wantSegs)
	}
	if len(l.Breaks) != 1 || l.Breaks[0].Key != layout.ChangeSetKey(11) || l.Breaks[0].TXID != 11 || l.Breaks[0].Size != segment.BreakSize {
		t.Errorf("Breaks = %+v, want the marker at 11", l.Breaks)
	}
	var foreign []string
	for _, f := range l.Foreign {
		foreign = append(foreign, f.Key)
		if f.Why == "" {
			t.Errorf("foreign %s has no reason", f.Key)
		}
	}
	want := []string{layout.ChangeSetKey(20), layout.ChangeSetKey(30), layout.ChangeSetKey(40), layout.ChangeSetKey(50), layout.ChangeSetKey(60)}
	if !slices.Equal(foreign, want) {
		t.Errorf("Foreign = %q\nwant %q", foreign, want)
	}
	for _, f := range l.Foreign {
		if f.Key == layout.ChangeSetKey(30) && !strings.Contains(f.Why, "txid 31") {
			t.Errorf("foreign %s: why %q does not name the header's txid", f.Key, f.Why)
		}
	}
	if n := l.Newest(); n != 11 {
		t.Errorf("Newest = %d, want 11 (the marker's key is taken)", n)
	}
}

// Only first-only keys cost a read: a replica of ranged keys lists as it
// always did.
func TestReadReadsOnlyFirstOnlyKeys(t *testing.T) {
	s := memstore.New()
	for first := uint64(1); first <= 40; first += 2 {
		putBytes(t, s, layout.SegmentKey(first, first+1), []byte("not read"))
	}
	for first := uint64(41); first <= 140; first++ {
		putBytes(t, s, layout.ChangeSetKey(first), segmentBytes(t, first, first))
	}
	heads := &countingHeads{HeadReader: segment.Heads(s)}
	l, err := layout.Read(context.Background(), s, layout.Segments, heads)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Segments) != 120 || len(l.Foreign) != 0 {
		t.Fatalf("Read found %d segments and %d foreign, want 120 and 0", len(l.Segments), len(l.Foreign))
	}
	if n := heads.n.Load(); n != 100 {
		t.Errorf("read %d headers, want 100", n)
	}
	for i, seg := range l.Segments {
		if i > 0 && seg.First != l.Segments[i-1].Last+1 {
			t.Fatalf("segment %d %+v does not follow %+v", i, seg, l.Segments[i-1])
		}
	}
}

// A header that cannot be read for a reason other than the object (the
// network, the store) fails the listing: taking the object for damage
// would have verify report, and gc delete, a sound change set.
func TestReadFailsWhenAHeaderCannotBeRead(t *testing.T) {
	s := memstore.New()
	putBytes(t, s, layout.ChangeSetKey(5), segmentBytes(t, 5, 9))
	heads := failingHeads{}
	if _, err := layout.Read(context.Background(), s, layout.Segments, heads); err == nil || !strings.Contains(err.Error(), layout.ChangeSetKey(5)) {
		t.Fatalf("Read = %v, want an error naming %s", err, layout.ChangeSetKey(5))
	}
	if _, err := layout.Read(context.Background(), s, layout.Segments, nil); err == nil {
		t.Fatal("Read of segments without a header reader succeeded")
	}
}

type countingHeads struct {
	layout.HeadReader
	n atomic.Int64
}

func (c *countingHeads) ReadHead(ctx context.Context, info objstore.Info) (layout.Head, error) {
	c.n.Add(1)
	return c.HeadReader.ReadHead(ctx, info)
}

type failingHeads struct{}

func (failingHeads) ReadHead(context.Context, objstore.Info) (layout.Head, error) {
	return layout.Head{}, &objstore.Error{Op: "get", Err: objstore.ErrTimeout}
}
