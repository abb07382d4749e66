package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/objstore/storetest"
)

func newTestKey(t testing.TB) *Key {
	t.Helper()
	text, _, err := Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRing(t testing.TB, write *Key, readOnly ...*Key) *Ring {
	t.Helper()
	r, err := NewRing(write, readOnly...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A sealed store behaves as any store does, so that nothing above it
// needs to know whether a replica is encrypted.
func TestConformance(t *testing.T) {
	ring := newRing(t, newTestKey(t))
	storetest.Run(t, func(t *testing.T) objstore.Store {
		return New(memstore.New(), ring, t.TempDir())
	}, storetest.Options{SumOnlyWhenGiven: true})
}

func put(t *testing.T, s objstore.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func get(s objstore.Store, key string) ([]byte, error) {
	rc, _, err := s.Get(context.Background(), key, nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func rawGet(t *testing.T, s objstore.Store, key string) []byte {
	t.Helper()
	b, err := get(s, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStoredBytesHoldNoPlaintext(t *testing.T) {
	inner := memstore.New()
	s := New(inner, newRing(t, newTestKey(t)), t.TempDir())
	marker := []byte("MARKER-personal-data-0123456789")
	for _, size := range []int{len(marker), 100 << 10, inMemory + 3} {
		body := bytes.Repeat(marker, size/len(marker)+1)[:size]
		put(t, s, "segments/x", body)
		raw := rawGet(t, inner, "segments/x")
		if bytes.Contains(raw, marker[:16]) {
			t.Fatalf("%d bytes: the stored object holds the plaintext", size)
		}
		if got := rawGet(t, s, "segments/x"); !bytes.Equal(got, body) {
			t.Fatalf("%d bytes: read back %d bytes that differ", size, len(got))
		}
		info, err := s.Head(context.Background(), "segments/x")
		if err != nil || info.Size != int64(size) {
			t.Fatalf("Head = %+v, %v; want the plaintext size %d", info, err, size)
		}
	}
}

func TestCleartextKeysStayClear(t *testing.T) {
	inner := memstore.New()
	s := New(inner, newRing(t, newTestKey(t)), "")
	put(t, s, "leases/replicator", []byte(`{"host":"a"}`))
	if got := rawGet(t, inner, "leases/replicator"); string(got) != `{"host":"a"}` {
		t.Fatalf("the lease was stored as %q", got)
	}
}

func TestWrongMissingAndNoKey(t *testing.T) {
	inner := memstore.New()
	a, b := newTestKey(t), newTestKey(t)
	put(t, New(inner, newRing(t, a), ""), "snapshots/1", []byte("secret"))
	put(t, inner, "snapshots/plain", []byte("in the clear"))

	_, err := get(New(inner, newRing(t, b), ""), "snapshots/1")
	if !errors.Is(err, ErrWrongKey) || errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), a.ID()) || !strings.Contains(err.Error(), "snapshots/1") {
		t.Fatalf("read with another key: %v; want ErrWrongKey naming the object and key %s", err, a.ID())
	}
	_, err = get(New(inner, nil, ""), "snapshots/1")
	if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), a.ID()) {
		t.Fatalf("read without a key: %v; want ErrNoKey naming key %s", err, a.ID())
	}
	_, err = get(New(inner, newRing(t, a), ""), "snapshots/plain")
	if !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("read a plaintext object with a key: %v; want ErrNotEncrypted", err)
	}
	if got, err := get(New(inner, nil, ""), "snapshots/plain"); err != nil || string(got) != "in the clear" {
		t.Fatalf("read a plaintext object without a key: %q, %v", got, err)
	}
	// A read-only ring reads what its keys wrote and refuses to write.
	ro := New(inner, newRing(t, nil, a), "")
	if got, err := get(ro, "snapshots/1"); err != nil || string(got) != "secret" {
		t.Fatalf("read with a read-only key: %q, %v", got, err)
	}
	if _, err := ro.Put(context.Background(), "snapshots/2", bytes.NewReader(nil), objstore.PutOptions{}); err == nil {
		t.Fatal("a ring without a write key wrote an object")
	}
}

func TestRotationReadsBoth(t *testing.T) {
	inner := memstore.New()
	a, b := newTestKey(t), newTestKey(t)
	put(t, New(inner, newRing(t, a), ""), "segments/a", []byte("under a"))
	put(t, New(inner, newRing(t, b), ""), "segments/b", []byte("under b"))
	both := New(inner, newRing(t, b, a), "")
	for key, want := range map[string]string{"segments/a": "under a", "segments/b": "under b"} {
		if got, err := get(both, key); err != nil || string(got) != want {
			t.Fatalf("%s: %q, %v", key, got, err)
		}
	}
	if _, err := get(New(inner, newRing(t, b), ""), "segments/a"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("segments/a with only the new key: %v; want ErrWrongKey", err)
	}
}

// Every byte of a sealed object is covered: flipping any one makes the
// read fail as damage, never return other plaintext.
func TestFlippedByteIsDamage(t *testing.T) {
	inner := memstore.New()
	s := New(inner, newRing(t, newTestKey(t)), "")
	body := bytes.Repeat([]byte("0123456789abcdef"), 9000) // three STREAM chunks
	put(t, s, "chunks/x", body)
	raw := rawGet(t, inner, "chunks/x")
	for _, i := range []int{0, 30, 60, 90, len(raw) / 2, len(raw) - 17, len(raw) - 1} {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		put(t, inner, "chunks/x", bad)
		got, err := get(s, "chunks/x")
		if err == nil {
			t.Fatalf("byte %d flipped: read %d bytes without an error", i, len(got))
		}
		if !errors.Is(err, objstore.ErrCorrupt) && !errors.Is(err, ErrNotEncrypted) && !errors.Is(err, ErrWrongKey) {
			t.Fatalf("byte %d flipped: %v; want damage", i, err)
		}
	}
	// Cut short.
	put(t, inner, "chunks/x", raw[:len(raw)-100])
	if _, err := get(s, "chunks/x"); !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("truncated: %v; want ErrCorrupt", err)
	}
}

// An object copied to another name does not open there: nobody can swap
// one change set for another without the key.
func TestMovedObjectDoesNotOpen(t *testing.T) {
	inner := memstore.New()
	s := New(inner, newRing(t, newTestKey(t)), "")
	put(t, s, "segments/1", []byte("first"))
	put(t, inner, "segments/2", rawGet(t, inner, "segments/1"))
	if _, err := get(s, "segments/2"); !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("moved object: %v; want ErrCorrupt", err)
	}
}

func TestRangedRead(t *testing.T) {
	s := New(memstore.New(), newRing(t, newTestKey(t)), "")
	body := make([]byte, 200<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	put(t, s, "segments/r", body)
	rc, _, err := s.Get(context.Background(), "segments/r", &objstore.Range{Offset: 70000, Length: 100})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body[70000:70100]) {
		t.Fatalf("ranged read: %d bytes, %v", len(got), err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	text, id, err := Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "key")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeyFile(path)
	if err != nil || k.ID() != id {
		t.Fatalf("LoadKeyFile = %v, %v; want key %s", k, err, id)
	}
	if strings.Contains(k.String(), strings.TrimPrefix(strings.Split(text, keyPrefix)[1], "\n")) {
		t.Fatal("a key's String shows its secret")
	}
	os.Chmod(path, 0o640)
	if _, err := LoadKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key file: %v; want a refusal saying chmod 600", err)
	}
	for name, bad := range map[string]string{
		"empty":   "# nothing\n",
		"garbage": "hello\n",
		"short":   keyPrefix + "AAAA\n",
		"two":     text + text,
	} {
		if _, err := ParseKey([]byte(bad)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// The derivation of a key's id and addresses, and the object format, are
// pinned: a replica written today must open with the same key file later.
func TestGolden(t *testing.T) {
	key, err := loadGoldenKey()
	if err != nil {
		t.Fatal(err)
	}
	if key.ID() != goldenKeyID {
		t.Fatalf("golden key id %s, want %s", key.ID(), goldenKeyID)
	}
	if got := key.addrs.Address([]byte("ferry")).String(); got != goldenAddress {
		t.Fatalf("address of %q under the golden key: %s, want %s", "ferry", got, goldenAddress)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "object.age"))
	if os.IsNotExist(err) && os.Getenv("FERRY_UPDATE_GOLDEN") != "" {
		inner := memstore.New()
		put(t, New(inner, newRing(t, key), ""), goldenName, []byte(goldenPlaintext))
		raw = rawGet(t, inner, goldenName)
		if err := os.WriteFile(filepath.Join("testdata", "object.age"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	inner := memstore.New()
	put(t, inner, goldenName, raw)
	got, err := get(New(inner, newRing(t, key), ""), goldenName)
	if err != nil || string(got) != goldenPlaintext {
		t.Fatalf("golden object: %q, %v", got, err)
	}
}

const (
	goldenName      = "segments/0000000000000001.seg"
	goldenPlaintext = "the golden plaintext of a sealed object"
	goldenKeyID     = "719d3f543c7c3f08"
	goldenAddress   = "d92d383851e1f3ad8f204692b1e7953f01598a2939172554ffef5d33c8cbd25a"
)

func loadGoldenKey() (*Key, error) {
	b, err := os.ReadFile(filepath.Join("testdata", "golden.key"))
	if err != nil {
		return nil, err
	}
	return ParseKey(b)
}

// PlainSize inverts the format's overhead exactly, for every size around
// the STREAM chunk boundaries.
func TestPlainSize(t *testing.T) {
	inner := memstore.New()
	s := New(inner, newRing(t, newTestKey(t)), "")
	for _, n := range []int{0, 1, 100, streamChunk - 1, streamChunk, streamChunk + 1, 2 * streamChunk, 2*streamChunk + 5} {
		put(t, s, "chunks/p", make([]byte, n))
		info, err := inner.Head(context.Background(), "chunks/p")
		if err != nil {
			t.Fatal(err)
		}
		if got := PlainSize(info.Size); got != int64(n) {
			t.Errorf("%d bytes stored as %d: PlainSize says %d", n, info.Size, got)
		}
	}
}

// No verb of package fmt shows a key's secret parts.
func TestKeyNeverPrinted(t *testing.T) {
	k := newTestKey(t)
	ring := newRing(t, k)
	secret := fmt.Sprintf("%x", k.wrap[:8])
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s", k, k, k, k),
		fmt.Sprintf("%v %+v %#v %s", *k, *k, *k, *k),
		fmt.Sprintf("%v %+v %#v", ring, ring, *ring),
	} {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprint(k.wrap[:4])) {
			t.Fatalf("a key printed its secret: %s", s)
		}
	}
}

// A ranged read near the start fetches only the chunks it needs, and
// still authenticates them.
func TestRangedReadFetchesLittle(t *testing.T) {
	inner := &rangeRecorder{Store: memstore.New()}
	s := New(inner, newRing(t, newTestKey(t)), "")
	body := make([]byte, 10*streamChunk+5)
	for i := range body {
		body[i] = byte(i * 13)
	}
	put(t, s, "segments/big", body)
	for _, r := range []objstore.Range{{Offset: 0, Length: 40}, {Offset: streamChunk - 10, Length: 20}, {Offset: 9 * streamChunk, Length: streamChunk + 5}, {Offset: 0, Length: int64(len(body))}} {
		rc, _, err := s.Get(context.Background(), "segments/big", &r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, body[r.Offset:r.Offset+r.Length]) {
			t.Fatalf("range %+v: %d bytes, %v", r, len(got), err)
		}
	}
	rc, _, err := s.Get(context.Background(), "segments/big", &objstore.Range{Offset: 0, Length: 40})
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(rc)
	rc.Close()
	if want := int64(headerSize + nonceSize + streamChunk + tagSize); inner.last == nil || inner.last.Length != want {
		t.Fatalf("a 40-byte read of the start asked the store for %+v, want %d bytes", inner.last, want)
	}
}

type rangeRecorder struct {
	objstore.Store
	last *objstore.Range
}

func (r *rangeRecorder) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	r.last = rng
	return r.Store.Get(ctx, key, rng)
}
