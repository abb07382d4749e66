package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// genManifest draws a valid manifest with random addresses.
func genManifest(t *rapid.T) Manifest {
	pageSize := rapid.SampledFrom([]int{512, 1024, 4096, 8192, 65536}).Draw(t, "pageSize")
	m := Manifest{
		TXID:      rapid.Uint64Range(1, 1<<64-1).Draw(t, "txid"),
		Time:      time.Unix(0, rapid.Int64Range(0, 1<<63-1).Draw(t, "nanos")).UTC(),
		PageSize:  pageSize,
		PageCount: rapid.Uint32Range(1, uint32(40*ChunkSize/pageSize)).Draw(t, "pageCount"),
		Scheme:    SchemeSHA256,
	}
	seed := rapid.Uint64().Draw(t, "seed")
	rng := rand.New(rand.NewPCG(seed, 0))
	m.Chunks = make([]Address, ChunkCount(m.Size()))
	for i := range m.Chunks {
		for j := range m.Chunks[i] {
			m.Chunks[i][j] = byte(rng.Uint32())
		}
	}
	m.DBHash = DBHash(m.PageSize, m.PageCount, m.Chunks)
	return m
}

func TestManifestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := genManifest(t)
		data, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseManifest(data)
		if err != nil {
			t.Fatal(err)
		}
		again, err := got.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) || !got.Time.Equal(m.Time) || got.TXID != m.TXID ||
			got.PageSize != m.PageSize || got.PageCount != m.PageCount || len(got.Chunks) != len(m.Chunks) {
			t.Fatalf("parsed %+v from %+v (%v)", got, m, err)
		}
	})
}

func sampleManifestBytes(t testing.TB) []byte {
	m := Manifest{TXID: 77, Time: t0, PageSize: 4096, PageCount: 40, Scheme: SchemeSHA256}
	for i := range ChunkCount(m.Size()) {
		m.Chunks = append(m.Chunks, SHA256{}.Address([]byte{byte(i)}))
	}
	m.DBHash = DBHash(m.PageSize, m.PageCount, m.Chunks)
	data, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestManifestEveryFlipAndTruncationRejected changes every byte of a small
// manifest, and cuts it at every length: each must be refused.
func TestManifestEveryFlipAndTruncationRejected(t *testing.T) {
	data := sampleManifestBytes(t)
	for off := range data {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[off] ^= mask
			if _, err := ParseManifest(bad); !errors.Is(err, objstore.ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("byte %d ^ %#x: ParseManifest = %v", off, mask, err)
			}
		}
	}
	for n := range len(data) {
		if _, err := ParseManifest(data[:n]); !errors.Is(err, objstore.ErrCorrupt) {
			t.Fatalf("truncated to %d: ParseManifest = %v", n, err)
		}
	}
	if _, err := ParseManifest(append(bytes.Clone(data), 0)); !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("one byte appended: ParseManifest = %v", err)
	}
}

// rewriteManifestHeader changes header fields and fixes the header CRC and
// the trailer, so only the change itself is wrong.
func rewriteManifestHeader(data []byte, change func(h []byte)) []byte {
	bad := bytes.Clone(data)
	change(bad)
	binary.LittleEndian.PutUint32(bad[88:], crc32.Checksum(bad[:88], castagnoli))
	body := bad[:len(bad)-manifestSumSize]
	sum := sha256Sum(body)
	copy(bad[len(body):], sum[:])
	return bad
}

func TestManifestRejectsInconsistentFields(t *testing.T) {
	data := sampleManifestBytes(t)
	le := binary.LittleEndian
	for _, tc := range []struct {
		name    string
		change  func(h []byte)
		version bool
		want    string
	}{
		{"version 3", func(h []byte) { le.PutUint16(h[8:], 3) }, true, "version 3"},
		{"scheme 3", func(h []byte) { h[10] = 3 }, true, "address scheme 3"},
		{"keyed scheme without its key", func(h []byte) { h[10] = 2 }, false, "address key 00000000 does not go with address scheme 2"},
		{"encoding 0", func(h []byte) { h[11] = 0 }, true, "chunk encoding 0"},
		{"page size 3000", func(h []byte) { le.PutUint32(h[12:], 3000) }, false, "page size 3000"},
		{"page count 0", func(h []byte) { le.PutUint32(h[16:], 0) }, false, "page count is 0"},
		{"more pages", func(h []byte) { le.PutUint32(h[16:], 41) }, false, "database size"},
		{"huge page count", func(h []byte) { le.PutUint32(h[16:], 1<<32-1); le.PutUint32(h[12:], 65536) }, false, "more chunks than"},
		{"chunk size", func(h []byte) { le.PutUint32(h[20:], 4096) }, false, "chunk size 4096"},
		{"chunk count", func(h []byte) { le.PutUint32(h[24:], 4) }, false, "4 chunks for 163840 bytes"},
		{"txid 0", func(h []byte) { le.PutUint64(h[32:], 0) }, false, "txid is 0"},
		{"time before 1970", func(h []byte) { le.PutUint64(h[40:], 1<<63) }, false, "before 1970"},
		{"database size", func(h []byte) { le.PutUint64(h[48:], 1) }, false, "database size 1 bytes"},
		{"database hash", func(h []byte) { h[60] ^= 1 }, false, "database hash does not match"},
		{"address", func(h []byte) { h[manifestHeaderSize+5] ^= 1 }, false, "database hash does not match"},
		{"address key without a keyed scheme", func(h []byte) { h[29] = 1 }, false, "does not go with address scheme 1"},
		{"reserved after crc", func(h []byte) { h[93] = 1 }, false, "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest(rewriteManifestHeader(data, tc.change))
			if tc.version != errors.Is(err, ErrVersion) || tc.version == errors.Is(err, objstore.ErrCorrupt) {
				t.Fatalf("ParseManifest = %v; want version error: %v", err, tc.version)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	data := sampleManifestBytes(f)
	f.Add(data)
	f.Add(data[:manifestHeaderSize])
	f.Add([]byte("FERRYSNP"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, objstore.ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("ParseManifest = %v: neither corrupt nor a version error", err)
			}
			return
		}
		again, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted a manifest that does not re-encode to itself (%v)", err)
		}
	})
}

// The keys themselves are package layout's, and tested there; these are
// the forms this package hands out.
func TestManifestKey(t *testing.T) {
	if got := ManifestKey(255); got != "snapshots/00000000000000ff.manifest" {
		t.Errorf("ManifestKey(255) = %q", got)
	}
	if got := (&Manifest{TXID: 255}).Key(); got != ManifestKey(255) {
		t.Errorf("Manifest.Key = %q", got)
	}
	a := SHA256{}.Address([]byte("x"))
	if key := ChunkKey(a); key != "chunks/"+a.String()[:2]+"/"+a.String() {
		t.Errorf("ChunkKey = %q", key)
	}
	if b, err := ParseAddress(a.String()); err != nil || b != a {
		t.Errorf("ParseAddress = %v, %v", b, err)
	}
	for _, s := range []string{"", "ab", strings.ToUpper(a.String()), a.String() + "0"} {
		if _, err := ParseAddress(s); err == nil {
			t.Errorf("ParseAddress(%q) succeeded", s)
		}
	}
}

func TestListAndLoad(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	img := randomImage(rand.New(rand.NewPCG(8, 8)), 3*ChunkSize)
	var last Manifest
	for i, txid := range []uint64{30, 10, 20} {
		m, _, err := Write(ctx, store, bytes.NewReader(img[:(i+1)*ChunkSize]), 4096, uint32((i+1)*16), txid, t0.Add(time.Duration(txid)*time.Second), Options{})
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	// A stray object and a damaged manifest.
	store.Put(ctx, "snapshots/notes.txt", bytes.NewReader([]byte("hi")), objstore.PutOptions{})
	store.Put(ctx, ManifestKey(40), bytes.NewReader([]byte("FERRYSNP and then nonsense")), objstore.PutOptions{})

	infos, err := List(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 4 {
		t.Fatalf("List = %+v", infos)
	}
	for i, want := range []struct {
		txid  uint64
		pages uint32
	}{{10, 32}, {20, 48}, {30, 16}} {
		got := infos[i]
		if got.Err != nil || got.TXID != want.txid || got.PageCount != want.pages || got.PageSize != 4096 ||
			got.Size != int64(want.pages)*4096 || !got.Time.Equal(t0.Add(time.Duration(want.txid)*time.Second)) {
			t.Errorf("List[%d] = %+v", i, got)
		}
	}
	if bad := infos[3]; bad.TXID != 40 || !errors.Is(bad.Err, objstore.ErrCorrupt) {
		t.Errorf("damaged manifest listed as %+v", bad)
	}

	loaded, err := Load(ctx, store, 20)
	if err != nil || !manifestsEqual(loaded, last) {
		t.Fatalf("Load(20) = %+v, %v", loaded, err)
	}
	if _, err := Load(ctx, store, 40); !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), ManifestKey(40)) {
		t.Fatalf("Load(40) = %v", err)
	}
	if _, err := Load(ctx, store, 50); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Load(50) = %v", err)
	}
	// A manifest stored under another txid's key.
	data, _ := last.MarshalBinary()
	store.Put(ctx, ManifestKey(60), bytes.NewReader(data), objstore.PutOptions{})
	if _, err := Load(ctx, store, 60); !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), "names txid 20") {
		t.Fatalf("Load(60) = %v", err)
	}
	infos, _ = List(ctx, store)
	if bad := infos[len(infos)-1]; bad.TXID != 60 || !errors.Is(bad.Err, objstore.ErrCorrupt) {
		t.Fatalf("misplaced manifest listed as %+v", bad)
	}
}

// TestLoadRefusesHugeManifest stores an object larger than any manifest
// may be: Load refuses it rather than read it all.
func TestLoadRefusesHugeManifest(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 64 MiB")
	}
	store := memstore.New()
	huge := make([]byte, MaxManifestSize+1)
	store.Put(context.Background(), ManifestKey(1), bytes.NewReader(huge), objstore.PutOptions{})
	if _, err := Load(context.Background(), store, 1); !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Load = %v", err)
	}
}
