// Package storetest is the conformance suite every objstore backend must
// pass. It is the real definition of the Store interface: a backend that
// passes it behaves like every other one.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Options tune the suite to a backend.
type Options struct {
	// MultipartSize is the size of the body the multipart test uploads; a
	// backend under test should be configured so that it goes multipart.
	// Zero means 15 MiB (3 x 5 MiB).
	MultipartSize int64
	// ListKeys is how many keys the pagination test writes. Zero means 1,100,
	// past S3's page size of 1,000.
	ListKeys int
	// SumOnlyWhenGiven says the store records an object's SHA-256 only
	// when the Put gives it (PutOptions.SHA256), which the contract
	// allows: an encrypting store would otherwise hash every plaintext
	// for nobody.
	SumOnlyWhenGiven bool
}

// Run runs the whole suite. newStore must return an empty store each call.
func Run(t *testing.T, newStore func(t *testing.T) objstore.Store, opts Options) {
	if opts.MultipartSize == 0 {
		opts.MultipartSize = 15 << 20
	}
	if opts.ListKeys == 0 {
		opts.ListKeys = 1100
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s objstore.Store, opts Options)
	}{
		{"PutGetRoundTrip", testPutGet},
		{"EmptyObject", testEmpty},
		{"Overwrite", testOverwrite},
		{"Metadata", testMetadata},
		{"NotFound", testNotFound},
		{"CreateOnly", testCreateOnly},
		{"CreateOnlyRace", testCreateOnlyRace},
		{"CreateOnlyKeepsWriter", testCreateOnlyKeepsWriter},
		{"CompareAndSwap", testCompareAndSwap},
		{"RangedRead", testRangedRead},
		{"ListPrefix", testListPrefix},
		{"ListPagination", testListPagination},
		{"Delete", testDelete},
		{"Multipart", testMultipart},
		{"PutFromOffset", testPutFromOffset},
		{"CancelledContext", testCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t), opts)
		})
	}
}

func randomBytes(t *testing.T, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, s objstore.Store, key string, data []byte, opts objstore.PutOptions) objstore.Info {
	t.Helper()
	info, err := s.Put(context.Background(), key, bytes.NewReader(data), opts)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return info
}

func get(t *testing.T, s objstore.Store, key string, rng *objstore.Range) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key, rng)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func testPutGet(t *testing.T, s objstore.Store, opts Options) {
	data := randomBytes(t, 100_000)
	sum, _, err := objstore.HashBody(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var po objstore.PutOptions
	if opts.SumOnlyWhenGiven {
		po.SHA256 = sum
	}
	info := put(t, s, "dir/a.bin", data, po)
	if info.ETag == "" {
		t.Error("put returned no etag")
	}
	if got := get(t, s, "dir/a.bin", nil); !bytes.Equal(got, data) {
		t.Fatalf("get returned %d bytes that differ from the %d put", len(got), len(data))
	}
	h, err := s.Head(context.Background(), "dir/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	if h.Size != int64(len(data)) || h.ETag != info.ETag {
		t.Fatalf("head = size %d etag %q, want %d %q", h.Size, h.ETag, len(data), info.ETag)
	}
	if h.SHA256 != sum {
		t.Fatalf("head sha256 = %q, want %q", h.SHA256, sum)
	}
}

func testEmpty(t *testing.T, s objstore.Store, _ Options) {
	put(t, s, "empty", nil, objstore.PutOptions{})
	if got := get(t, s, "empty", nil); len(got) != 0 {
		t.Fatalf("empty object read back as %d bytes", len(got))
	}
}

func testOverwrite(t *testing.T, s objstore.Store, _ Options) {
	put(t, s, "k", []byte("one"), objstore.PutOptions{})
	put(t, s, "k", []byte("two, longer"), objstore.PutOptions{})
	if got := get(t, s, "k", nil); string(got) != "two, longer" {
		t.Fatalf("after overwrite got %q", got)
	}
}

func testMetadata(t *testing.T, s objstore.Store, _ Options) {
	meta := map[string]string{"ferry-txid": "0000000000000042", "kind": "segment"}
	put(t, s, "m", []byte("x"), objstore.PutOptions{Metadata: meta})
	h, err := s.Head(context.Background(), "m")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range meta {
		if h.Metadata[k] != v {
			t.Errorf("metadata %q = %q, want %q (all: %v)", k, h.Metadata[k], v, h.Metadata)
		}
	}
	_, info, err := s.Get(context.Background(), "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Metadata["kind"] != "segment" {
		t.Errorf("get metadata = %v", info.Metadata)
	}
}

func testNotFound(t *testing.T, s objstore.Store, _ Options) {
	ctx := context.Background()
	if _, _, err := s.Get(ctx, "missing", nil); !objstore.IsNotFound(err) {
		t.Errorf("get missing: err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, "missing", &objstore.Range{Offset: 0, Length: 1}); !objstore.IsNotFound(err) {
		t.Errorf("ranged get missing: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Head(ctx, "missing"); !objstore.IsNotFound(err) {
		t.Errorf("head missing: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Errorf("delete missing: %v, want nil", err)
	}
	if _, err := s.Put(ctx, "missing", bytes.NewReader([]byte("x")), objstore.PutOptions{IfMatch: `"abc"`}); !objstore.IsPreconditionFailed(err) && !objstore.IsNotFound(err) {
		t.Errorf("compare-and-swap on a missing key: err = %v, want a failed precondition", err)
	}
}

func testCreateOnly(t *testing.T, s objstore.Store, _ Options) {
	put(t, s, "lease", []byte("first"), objstore.PutOptions{IfNoneMatch: true})
	_, err := s.Put(context.Background(), "lease", bytes.NewReader([]byte("second")), objstore.PutOptions{IfNoneMatch: true})
	if !objstore.IsPreconditionFailed(err) {
		t.Fatalf("second create-only put: err = %v, want ErrPreconditionFailed", err)
	}
	if got := get(t, s, "lease", nil); string(got) != "first" {
		t.Fatalf("create-only put overwrote: got %q", got)
	}
}

// testCreateOnlyKeepsWriter checks what a writer that finds its key
// taken relies on to tell its own earlier attempt from another writer's
// object: Head returns the first writer's metadata and content checksum,
// whatever the refused put carried.
func testCreateOnlyKeepsWriter(t *testing.T, s objstore.Store, _ Options) {
	ctx := context.Background()
	first := []byte("the first writer's change set")
	info := put(t, s, "cs", first, objstore.PutOptions{IfNoneMatch: true, Metadata: map[string]string{"ferry-writer-id": "one"}})
	_, err := s.Put(ctx, "cs", bytes.NewReader([]byte("another")), objstore.PutOptions{IfNoneMatch: true, Metadata: map[string]string{"ferry-writer-id": "two"}})
	if !objstore.IsPreconditionFailed(err) {
		t.Fatalf("second create-only put: err = %v, want ErrPreconditionFailed", err)
	}
	h, err := s.Head(ctx, "cs")
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata["ferry-writer-id"] != "one" || h.Size != int64(len(first)) {
		t.Fatalf("Head after a refused put = %+v, want the first writer's object", h)
	}
	if h.SHA256 != "" && h.SHA256 != info.SHA256 {
		t.Fatalf("Head's sha256 %s differs from the one Put returned, %s", h.SHA256, info.SHA256)
	}
}

func testCreateOnlyRace(t *testing.T, s objstore.Store, _ Options) {
	const racers = 16
	var (
		wg     sync.WaitGroup
		wins   atomic.Int32
		winner atomic.Int32
		start  = make(chan struct{})
		errs   = make(chan error, racers)
	)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Appendf(nil, "racer %d", i)
			_, err := s.Put(context.Background(), "race", bytes.NewReader(body), objstore.PutOptions{IfNoneMatch: true})
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(int32(i))
			case !objstore.IsPreconditionFailed(err):
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("racer failed with something other than a precondition: %v", err)
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d racers won a create-only put, want exactly 1", n)
	}
	if got, want := string(get(t, s, "race", nil)), fmt.Sprintf("racer %d", winner.Load()); got != want {
		t.Fatalf("stored %q, but the winner was %q", got, want)
	}
}

func testCompareAndSwap(t *testing.T, s objstore.Store, _ Options) {
	v1 := put(t, s, "cas", []byte("v1"), objstore.PutOptions{})
	v2 := put(t, s, "cas", []byte("v2"), objstore.PutOptions{IfMatch: v1.ETag})
	if v2.ETag == v1.ETag {
		t.Fatalf("etag did not change on a new content: %q", v2.ETag)
	}
	_, err := s.Put(context.Background(), "cas", bytes.NewReader([]byte("v3")), objstore.PutOptions{IfMatch: v1.ETag})
	if !objstore.IsPreconditionFailed(err) {
		t.Fatalf("compare-and-swap with a stale etag: err = %v, want ErrPreconditionFailed", err)
	}
	if got := get(t, s, "cas", nil); string(got) != "v2" {
		t.Fatalf("after failed swap got %q, want v2", got)
	}
	put(t, s, "cas", []byte("v3"), objstore.PutOptions{IfMatch: v2.ETag})
}

func testRangedRead(t *testing.T, s objstore.Store, _ Options) {
	data := randomBytes(t, 200_000)
	put(t, s, "r", data, objstore.PutOptions{})
	for _, r := range [][2]int64{{0, 1}, {0, 200_000}, {65536, 65536}, {199_999, 1}, {1000, -1}, {150_000, 100_000}} {
		rng := objstore.Range{Offset: r[0], Length: r[1]}
		want := data[rng.Offset:]
		if rng.Length >= 0 && rng.Offset+rng.Length < int64(len(data)) {
			want = data[rng.Offset : rng.Offset+rng.Length]
		}
		if got := get(t, s, "r", &rng); !bytes.Equal(got, want) {
			t.Errorf("range %+v: got %d bytes, want %d equal bytes", rng, len(got), len(want))
		}
	}
}

func testListPrefix(t *testing.T, s objstore.Store, _ Options) {
	for _, k := range []string{"a/1", "a/2", "ab/1", "b/1", "a/sub/deep"} {
		put(t, s, k, []byte(k), objstore.PutOptions{})
	}
	var got []string
	for info, err := range s.List(context.Background(), "a/") {
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(len(info.Key)) {
			t.Errorf("list %s: size %d, want %d", info.Key, info.Size, len(info.Key))
		}
		got = append(got, info.Key)
	}
	want := []string{"a/1", "a/2", "a/sub/deep"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("list a/ = %v, want %v", got, want)
	}
	n := 0
	for _, err := range s.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("list of everything found %d keys, want 5", n)
	}
}

func testListPagination(t *testing.T, s objstore.Store, opts Options) {
	keys := make([]string, opts.ListKeys)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("p/%06d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := s.Put(context.Background(), keys[i], bytes.NewReader(nil), objstore.PutOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	i := 0
	for info, err := range s.List(context.Background(), "p/") {
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(keys) || info.Key != keys[i] {
			t.Fatalf("list item %d = %q, want %q in order", i, info.Key, keys[min(i, len(keys)-1)])
		}
		i++
	}
	if i != len(keys) {
		t.Fatalf("listed %d keys, want %d", i, len(keys))
	}
	// Breaking out of the loop early must be allowed and stop the listing.
	n := 0
	for _, err := range s.List(context.Background(), "p/") {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
}

func testDelete(t *testing.T, s objstore.Store, _ Options) {
	var keys []string
	for i := range 5 {
		k := fmt.Sprintf("d/%d", i)
		keys = append(keys, k)
		put(t, s, k, []byte("x"), objstore.PutOptions{})
	}
	if err := s.Delete(context.Background(), keys[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), keys[1], keys[2], keys[3], "d/never"); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys[:4] {
		if _, err := s.Head(context.Background(), k); !objstore.IsNotFound(err) {
			t.Errorf("head %s after delete: %v, want not found", k, err)
		}
	}
	if got := get(t, s, keys[4], nil); string(got) != "x" {
		t.Errorf("untouched key %s read %q", keys[4], got)
	}
}

func testMultipart(t *testing.T, s objstore.Store, opts Options) {
	data := randomBytes(t, opts.MultipartSize)
	put(t, s, "big", data, objstore.PutOptions{})
	if got := get(t, s, "big", nil); !bytes.Equal(got, data) {
		t.Fatalf("multipart object read back differs (%d bytes, want %d)", len(got), len(data))
	}
	h, err := s.Head(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	if h.Size != opts.MultipartSize {
		t.Fatalf("head size %d, want %d", h.Size, opts.MultipartSize)
	}
	rng := objstore.Range{Offset: 5<<20 - 10, Length: 20}
	if got := get(t, s, "big", &rng); !bytes.Equal(got, data[rng.Offset:rng.Offset+rng.Length]) {
		t.Fatal("ranged read across a part boundary differs")
	}
}

func testPutFromOffset(t *testing.T, s objstore.Store, _ Options) {
	r := bytes.NewReader([]byte("skipped|kept"))
	if _, err := r.Seek(8, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), "off", r, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "off", nil); string(got) != "kept" {
		t.Fatalf("put from offset 8 stored %q, want %q", got, "kept")
	}
}

func testCancelled(t *testing.T, s objstore.Store, _ Options) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "c", bytes.NewReader([]byte("x")), objstore.PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("put with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, _, err := s.Get(ctx, "c", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("get with a cancelled context: err = %v, want context.Canceled", err)
	}
	for _, err := range s.List(ctx, "") {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("list with a cancelled context: err = %v, want context.Canceled", err)
		}
		break
	}
	if _, err := s.Head(context.Background(), "c"); !objstore.IsNotFound(err) {
		t.Errorf("a put with a cancelled context left an object behind: %v", err)
	}
}
