package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// A restore reads a pack's chunks in runs: nearby chunks in one read,
// across gaps shorter than maxFetchGap, up to maxFetch bytes; loose
// chunks one read each.
func TestPlanReadsRunsOfNearbyChunks(t *testing.T) {
	const n = 8
	m := Manifest{Chunks: make([]Address, n), Packs: []Pack{{ID: PackID{1}, Size: 1 << 30}, {ID: PackID{2}, Size: 1 << 30}}}
	m.Locs = []Loc{
		{Pack: 0, Offset: 0, Length: 100},
		{Pack: 0, Offset: 100, Length: 100},
		{Pack: 0, Offset: 200 + maxFetchGap + 1, Length: 100}, // past a long gap: a read of its own
		{Pack: 1, Offset: 0, Length: 1000},
		{Pack: 1, Offset: 1000 + maxFetchGap - 1, Length: 10}, // a short gap: the same read
		{Pack: 1, Offset: maxFetch, Length: 10},               // past maxFetch from the read's start
		{Pack: Loose},
		{Pack: Loose},
	}
	for i := range m.Chunks {
		m.Chunks[i] = Address{byte(i)}
	}
	got := plan(&m, []int{7, 6, 5, 4, 3, 2, 1, 0})
	var runs [][]int
	for _, f := range got {
		runs = append(runs, f.items)
		if !f.loose && (f.offset != int64(m.Locs[f.items[0]].Offset) || f.end != int64(m.Locs[f.items[len(f.items)-1]].Offset+m.Locs[f.items[len(f.items)-1]].Length)) {
			t.Errorf("read %v spans %d..%d", f.items, f.offset, f.end)
		}
	}
	want := [][]int{{7}, {6}, {0, 1}, {2}, {3, 4}, {5}}
	if !slices.EqualFunc(runs, want, slices.Equal) {
		t.Fatalf("reads %v, want %v", runs, want)
	}
}

// A later snapshot that changed a few chunks restores from two
// generations of packs at once, reading only the chunks it names of the
// older one.
func TestRestoreAcrossPackGenerations(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: memstore.New()}
	img := randomImage(rand.New(rand.NewPCG(11, 11)), 40*ChunkSize)
	opts := Options{PackBytes: 6 * ChunkSize}
	base, _, err := Write(ctx, store, bytes.NewReader(img), 4096, uint32(len(img)/4096), 1, t0, opts)
	if err != nil {
		t.Fatal(err)
	}
	dirty := ChunkSet{}
	for _, i := range []int{3, 17, 18, 39} {
		img[i*ChunkSize+9] ^= 0x5a
		dirty.Add(i)
	}
	opts.Previous, opts.Dirty = &base, dirty
	m, stats, err := Write(ctx, store, bytes.NewReader(img), 4096, uint32(len(img)/4096), 2, t0, opts)
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksUploaded != 4 || stats.Packs != 1 {
		t.Fatalf("stats %+v; want the 4 changed chunks in one pack", stats)
	}
	for _, par := range []int{1, 3, 8} {
		var dst memFile
		if err := Restore(ctx, store, m, &dst, par, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst.buf, img) {
			t.Fatalf("parallelism %d: restored image differs", par)
		}
	}
	var old memFile
	if err := Restore(ctx, store, base, &old, 2, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(old.buf, img) {
		t.Fatal("the first snapshot restores the second's image")
	}
}

// Every location a version 2 manifest gives must fit what it names.
func TestManifestRejectsBadLocations(t *testing.T) {
	store := memstore.New()
	img := randomImage(rand.New(rand.NewPCG(12, 12)), 3*ChunkSize)
	good, _, err := Write(context.Background(), store, bytes.NewReader(img), 4096, 48, 1, t0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(m *Manifest)
		want   string
	}{
		{"past the pack", func(m *Manifest) { m.Locs[2].Offset = m.Packs[0].Size }, "past the end"},
		{"no such pack", func(m *Manifest) { m.Locs[1].Pack = 5 }, "in pack 5 of 1"},
		{"empty", func(m *Manifest) { m.Locs[1].Length = 0 }, "stored in 0 bytes"},
		{"loose with an offset", func(m *Manifest) { m.Locs[0] = Loc{Pack: Loose, Offset: 3} }, "loose but has offset"},
		{"pack named twice", func(m *Manifest) { m.Packs = append(m.Packs, m.Packs[0]) }, "named twice"},
		{"pack unused", func(m *Manifest) { m.Packs = append(m.Packs, Pack{ID: PackID{9}, Size: 10}) }, "holds none"},
		{"a location short", func(m *Manifest) { m.Locs = m.Locs[:2] }, "2 chunk locations for 3 chunks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := good
			m.Packs = slices.Clone(good.Packs)
			m.Locs = slices.Clone(good.Locs)
			tc.change(&m)
			if _, err := m.MarshalBinary(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("MarshalBinary = %v, want %q", err, tc.want)
			}
		})
	}
}

// A reader refuses a location past the end of its pack even when the
// manifest's checksums are right: a writer with a bug, or a hostile one,
// must not make a restore read past what it names.
func TestParseRejectsLocationPastThePack(t *testing.T) {
	store := memstore.New()
	img := randomImage(rand.New(rand.NewPCG(13, 13)), 3*ChunkSize)
	m, _, err := Write(context.Background(), store, bytes.NewReader(img), 4096, 48, 1, t0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	at := manifestHeaderSize + 3*32 + len(m.Packs)*packEntrySize + 2*locSize + 4 // chunk 2's offset
	binary.LittleEndian.PutUint32(data[at:], m.Packs[0].Size)
	sum := sha256.Sum256(data[:len(data)-32])
	copy(data[len(data)-32:], sum[:])
	if _, err := ParseManifest(data); !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), "past the end") {
		t.Fatalf("ParseManifest = %v", err)
	}
}
