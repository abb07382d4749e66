package layout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/testenv"
)

func put(t testing.TB, s objstore.Store, key string, size int) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(make([]byte, size)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func addr(b byte) [32]byte {
	var a [32]byte
	a[0], a[31] = b, b
	return a
}

func TestReadParsesAndSorts(t *testing.T) {
	s := memstore.New()
	put(t, s, layout.ManifestKey(9), 1)
	put(t, s, layout.ManifestKey(3), 2)
	put(t, s, layout.SegmentKey(4, 9), 3)
	put(t, s, layout.SegmentKey(4, 5), 4)
	put(t, s, layout.SegmentKey(2, 3), 5)
	put(t, s, layout.ChunkKey(addr(0xee)), 6)
	put(t, s, layout.ChunkKey(addr(0x01)), 7)

	l, err := layout.Read(context.Background(), s, layout.All, segment.Heads(s))
	if err != nil {
		t.Fatal(err)
	}
	wantSnaps := []layout.Snapshot{{Key: layout.ManifestKey(3), TXID: 3, Size: 2}, {Key: layout.ManifestKey(9), TXID: 9, Size: 1}}
	wantSegs := []layout.Segment{
		{Key: layout.SegmentKey(2, 3), First: 2, Last: 3, Size: 5},
		{Key: layout.SegmentKey(4, 5), First: 4, Last: 5, Size: 4},
		{Key: layout.SegmentKey(4, 9), First: 4, Last: 9, Size: 3},
	}
	wantChunks := []layout.Chunk{
		{Key: layout.ChunkKey(addr(0x01)), Addr: addr(0x01), Size: 7},
		{Key: layout.ChunkKey(addr(0xee)), Addr: addr(0xee), Size: 6},
	}
	// Chunks are compared by what this test controls: a store also
	// reports when it wrote them.
	sameChunk := func(a, b layout.Chunk) bool { return a.Key == b.Key && a.Addr == b.Addr && a.Size == b.Size }
	if !slices.Equal(l.Snapshots, wantSnaps) || !slices.Equal(l.Segments, wantSegs) || !slices.EqualFunc(l.Chunks, wantChunks, sameChunk) || len(l.Foreign) != 0 {
		t.Fatalf("Read =\n%+v\nwant\n%+v\n%+v\n%+v", l, wantSnaps, wantSegs, wantChunks)
	}
	if n := l.Newest(); n != 9 {
		t.Errorf("Newest = %d, want 9", n)
	}
	if n := (&layout.Listing{}).Newest(); n != 0 {
		t.Errorf("Newest of nothing = %d", n)
	}
}

// Objects in the replica's directories that are not ferry's are returned,
// with the reason, so that verify can name them; objects outside those
// directories are not listed at all, and neither is leases/.
func TestReadReportsForeignKeys(t *testing.T) {
	s := memstore.New()
	seg := layout.SegmentKey(5, 7)
	foreign := []string{
		"snapshots/notes.txt",
		"snapshots/00000000000000FF.manifest",
		seg + ".bak",
		"segments/0000000000000007-0000000000000005.seg",
		"chunks/ab/" + strings.Repeat("cd", 32),
		"chunks/README",
	}
	for _, k := range foreign {
		put(t, s, k, 3)
	}
	put(t, s, seg, 1)
	put(t, s, layout.ManifestKey(4), 1)
	put(t, s, "leases/primary", 1)
	put(t, s, "README", 1)
	put(t, s, "other-db/"+layout.SegmentKey(1, 1), 1)

	l, err := layout.Read(context.Background(), s, layout.All, segment.Heads(s))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Segments) != 1 || len(l.Snapshots) != 1 || len(l.Chunks) != 0 {
		t.Errorf("Read = %+v", l)
	}
	var got []string
	for _, f := range l.Foreign {
		got = append(got, f.Key)
		if f.Size != 3 || !strings.Contains(f.Why, "is not a") && !strings.Contains(f.Why, "reversed") {
			t.Errorf("foreign %s: size %d, why %q", f.Key, f.Size, f.Why)
		}
	}
	slices.Sort(foreign)
	if !slices.Equal(got, foreign) {
		t.Errorf("Foreign = %q\nwant %q", got, foreign)
	}

	l, err = layout.Read(context.Background(), s, layout.Segments, segment.Heads(s))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Snapshots) != 0 || len(l.Segments) != 1 || len(l.Foreign) != 2 {
		t.Errorf("Read(Segments) = %+v, want one segment and the two foreign keys under segments/", l)
	}
}

// failing lists n objects under a prefix, then fails, as a store does when
// a later page of a listing cannot be fetched.
type failing struct{ n int }

var errPage = errors.New("page 2 unavailable")

func (f failing) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) {
		for i := range f.n {
			if !yield(objstore.Info{Key: layout.SegmentKey(uint64(i+1), uint64(i+1)), Size: 1}, nil) {
				return
			}
		}
		yield(objstore.Info{}, &objstore.Error{Op: "list", Key: prefix, Err: errPage})
	}
}

// A listing cut short must not pass for a whole one: a replicator would
// number on from a txid the replica already used.
func TestReadFailsOnAFailedPage(t *testing.T) {
	l, err := layout.Read(context.Background(), failing{n: 1000}, layout.Segments, segment.Heads(nil))
	if !errors.Is(err, errPage) || !strings.Contains(err.Error(), "list segments") {
		t.Fatalf("Read = %d segments, %v; want the page's error", len(l.Segments), err)
	}
	if l.Segments != nil {
		t.Errorf("a failed Read returned %d segments", len(l.Segments))
	}
}

func TestReadLargeListing(t *testing.T) {
	s := memstore.New()
	want := fill(t, s, 2500)
	l, err := layout.Read(context.Background(), s, layout.All, segment.Heads(s))
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, want)
}

// TestReadPagesS3 lists more keys than one S3 page holds (1,000) from a
// real server, so that Read follows continuation tokens.
func TestReadPagesS3(t *testing.T) {
	srv := testenv.S3(t)
	bucket := testenv.Bucket(t, srv)
	s, err := s3store.New(context.Background(), s3store.Config{
		Bucket: bucket, Prefix: "db", Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fill(t, s, 1003)
	l, err := layout.Read(context.Background(), s, layout.All, segment.Heads(s))
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, want)
}

// fill stores n segments, n chunks, one manifest per 100 segments and a
// foreign key, eight at a time, and returns the newest txid.
func fill(t *testing.T, s objstore.Store, n int) uint64 {
	t.Helper()
	keys := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for k := range keys {
				if _, err := s.Put(context.Background(), k, bytes.NewReader([]byte{1}), objstore.PutOptions{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := 1; i <= n; i++ {
		keys <- layout.SegmentKey(uint64(2*i), uint64(2*i+1))
		var a [32]byte
		copy(a[:], fmt.Sprintf("chunk %d", i))
		keys <- layout.ChunkKey(a)
		if i%100 == 0 {
			keys <- layout.ManifestKey(uint64(2 * i))
		}
	}
	keys <- "segments/stray"
	close(keys)
	wg.Wait()
	return uint64(2*n + 1)
}

func check(t *testing.T, l layout.Listing, newest uint64) {
	t.Helper()
	n := int(newest-1) / 2
	if len(l.Segments) != n || len(l.Chunks) != n || len(l.Snapshots) != n/100 || len(l.Foreign) != 1 {
		t.Fatalf("Read found %d segments, %d chunks, %d snapshots, %d foreign; want %d, %d, %d, 1",
			len(l.Segments), len(l.Chunks), len(l.Snapshots), len(l.Foreign), n, n, n/100)
	}
	for i, s := range l.Segments {
		if s.First != uint64(2*i+2) || s.Last != s.First+1 {
			t.Fatalf("segment %d is %+v: out of order", i, s)
		}
	}
	if !slices.IsSortedFunc(l.Chunks, func(a, b layout.Chunk) int { return strings.Compare(a.Key, b.Key) }) {
		t.Error("chunks are not in key order")
	}
	if l.Newest() != newest {
		t.Errorf("Newest = %d, want %d", l.Newest(), newest)
	}
}
