package layout

import (
	"crypto/sha256"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// The spellings buckets already hold. Changing one strands every replica
// written before.
func TestKeySpelling(t *testing.T) {
	addr := sha256.Sum256([]byte("x"))
	for _, c := range []struct{ got, want string }{
		{ManifestKey(255), "snapshots/00000000000000ff.manifest"},
		{ManifestKey(1<<64 - 1), "snapshots/ffffffffffffffff.manifest"},
		{SegmentKey(1, 255), "segments/0000000000000001-00000000000000ff.seg"},
		{SegmentKey(0xabcdef, 0xabcdf0), "segments/0000000000abcdef-0000000000abcdf0.seg"},
		{ChangeSetKey(255), "segments/00000000000000ff.seg"},
		{ChangeSetKey(1<<64 - 1), "segments/ffffffffffffffff.seg"},
		{ChunkKey(addr), "chunks/2d/2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"},
		{PackKey([16]byte(addr[:16])), "packs/2d/2d711642b726b04401627ca9fbac32f5"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestKeysRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		txid := rapid.Uint64Min(1).Draw(t, "txid")
		if got, err := ParseManifestKey(ManifestKey(txid)); err != nil || got != txid {
			t.Fatalf("ParseManifestKey(%q) = %d, %v", ManifestKey(txid), got, err)
		}
		first := rapid.Uint64Min(1).Draw(t, "first")
		last := rapid.Uint64Min(first).Draw(t, "last")
		if f, l, err := ParseSegmentKey(SegmentKey(first, last)); err != nil || f != first || l != last {
			t.Fatalf("ParseSegmentKey(%q) = %d, %d, %v", SegmentKey(first, last), f, l, err)
		}
		if got, err := ParseChangeSetKey(ChangeSetKey(first)); err != nil || got != first {
			t.Fatalf("ParseChangeSetKey(%q) = %d, %v", ChangeSetKey(first), got, err)
		}
		if f, l, err := ParseAnySegmentKey(ChangeSetKey(first)); err != nil || f != first || l != 0 {
			t.Fatalf("ParseAnySegmentKey(%q) = %d, %d, %v", ChangeSetKey(first), f, l, err)
		}
		if f, l, err := ParseAnySegmentKey(SegmentKey(first, last)); err != nil || f != first || l != last {
			t.Fatalf("ParseAnySegmentKey(%q) = %d, %d, %v", SegmentKey(first, last), f, l, err)
		}
		addr := [32]byte(rapid.SliceOfN(rapid.Byte(), 32, 32).Draw(t, "addr"))
		if got, err := ParseChunkKey(ChunkKey(addr)); err != nil || got != addr {
			t.Fatalf("ParseChunkKey(%q) = %x, %v", ChunkKey(addr), got, err)
		}
		id := [16]byte(addr[:16])
		if got, err := ParsePackKey(PackKey(id)); err != nil || got != id {
			t.Fatalf("ParsePackKey(%q) = %x, %v", PackKey(id), got, err)
		}
	})
}

// The golden files of the formats are stored under their keys; every one
// of them must parse as what it is.
func TestGoldenKeysParse(t *testing.T) {
	if _, _, err := ParseSegmentKey(SegmentKey(41, 43)); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("..", "snapshot", "testdata", "v1")
	var manifests, chunks int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		key := filepath.ToSlash(rel)
		if txid, err := ParseManifestKey(key); err == nil && ManifestKey(txid) == key {
			manifests++
		} else if addr, err := ParseChunkKey(key); err == nil && ChunkKey(addr) == key {
			chunks++
		} else {
			t.Errorf("golden object %s parses as nothing", key)
		}
		return nil
	})
	if err != nil || manifests != 1 || chunks != 3 {
		t.Fatalf("found %d manifests and %d chunks (%v); the golden snapshot has 1 and 3", manifests, chunks, err)
	}
}

func TestMalformedKeys(t *testing.T) {
	addr := strings.Repeat("ab", 32)
	for _, key := range []string{
		"", "snapshots/", "snapshots/00000000000000FF.manifest", "snapshots/0000000000000000.manifest",
		"snapshots/00000000000000ff.manifest.tmp", "snapshots/0000000000000ff.manifest",
		"x/snapshots/00000000000000ff.manifest", "snapshots/+0000000000000ff.manifest",
		"snapshots/000000000000000ff.manifest", "snapshots/notes.txt",
		"segments/0000000000000001-00000000000000ff.seg", "chunks/ab/" + addr,
	} {
		if _, err := ParseManifestKey(key); err == nil {
			t.Errorf("ParseManifestKey(%q) succeeded", key)
		}
	}
	for _, key := range []string{
		"", "segments/", "segments/0000000000000001-00000000000000FF.seg",
		"segments/0000000000000001-00000000000000ff.seg.tmp", "x/segments/0000000000000001-00000000000000ff.seg",
		"segments/000000000000001-00000000000000ff.seg", "segments/0000000000000001_00000000000000ff.seg",
		"segments/0000000000000002-0000000000000001.seg", "segments/0000000000000000-0000000000000001.seg",
		"segments/+000000000000001-0000000000000001.seg", "segments/0000000000000001-+000000000000001.seg",
		"segments/0000000000000001.seg", "snapshots/00000000000000ff.manifest",
	} {
		if _, _, err := ParseSegmentKey(key); err == nil {
			t.Errorf("ParseSegmentKey(%q) succeeded", key)
		}
	}
	for _, key := range []string{
		"", "segments/", "segments/00000000000000FF.seg", "segments/0000000000000000.seg",
		"segments/00000000000000ff.seg.tmp", "x/segments/00000000000000ff.seg",
		"segments/000000000000000ff.seg", "segments/00000000000000f.seg", "segments/+0000000000000ff.seg",
		"segments/0000000000000001-00000000000000ff.seg", "snapshots/00000000000000ff.manifest",
	} {
		if _, err := ParseChangeSetKey(key); err == nil {
			t.Errorf("ParseChangeSetKey(%q) succeeded", key)
		}
		if _, _, err := ParseAnySegmentKey(key); err == nil && key != "segments/0000000000000001-00000000000000ff.seg" {
			t.Errorf("ParseAnySegmentKey(%q) succeeded", key)
		}
	}
	for _, key := range []string{
		"", "chunks/", "chunks/ab/", "chunks/" + addr, "chunks/ab" + addr, "chunks/ab/" + addr + "0",
		"chunks/ab/" + addr[:62], "chunks/ba/" + addr, "chunks/AB/" + strings.ToUpper(addr),
		"chunks/ab/ab" + strings.ToUpper(addr[2:]), "chunks/ab/" + addr + ".tmp", "x/chunks/ab/" + addr,
		"chunks/zz/zz" + addr[2:], "chunks/ab/ab/" + addr,
	} {
		if _, err := ParseChunkKey(key); err == nil {
			t.Errorf("ParseChunkKey(%q) succeeded", key)
		}
	}
	id := addr[:32]
	for _, key := range []string{
		"", "packs/", "packs/ab/", "packs/" + id, "packs/ab" + id, "packs/ab/" + id + "0",
		"packs/ab/" + id[:30], "packs/ba/" + id, "packs/AB/" + strings.ToUpper(id),
		"packs/ab/" + id + ".tmp", "x/packs/ab/" + id, "chunks/ab/" + id, "packs/ab/" + addr,
	} {
		if _, err := ParsePackKey(key); err == nil {
			t.Errorf("ParsePackKey(%q) succeeded", key)
		}
	}
}

// FuzzParse holds every parser to its promise: it accepts exactly what its
// key function produces, so nothing a server lists is taken for another
// key of the same object.
func FuzzParse(f *testing.F) {
	for _, k := range []string{
		ManifestKey(1), SegmentKey(1, 2), ChangeSetKey(3), "segments/000000000000000A.seg", ChunkKey([32]byte{1}), PackKey([16]byte{1}), "snapshots/00000000000000FF.manifest",
		"segments/0000000000000002-0000000000000001.seg", "chunks/ab/ab",
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if txid, err := ParseManifestKey(key); err == nil && ManifestKey(txid) != key {
			t.Errorf("ParseManifestKey(%q) = %d, whose key is %q", key, txid, ManifestKey(txid))
		}
		if first, last, err := ParseSegmentKey(key); err == nil && SegmentKey(first, last) != key {
			t.Errorf("ParseSegmentKey(%q) = %d-%d, whose key is %q", key, first, last, SegmentKey(first, last))
		}
		if first, err := ParseChangeSetKey(key); err == nil && ChangeSetKey(first) != key {
			t.Errorf("ParseChangeSetKey(%q) = %d, whose key is %q", key, first, ChangeSetKey(first))
		}
		if addr, err := ParseChunkKey(key); err == nil && ChunkKey(addr) != key {
			t.Errorf("ParseChunkKey(%q) = %x, whose key is %q", key, addr, ChunkKey(addr))
		}
		if id, err := ParsePackKey(key); err == nil && PackKey(id) != key {
			t.Errorf("ParsePackKey(%q) = %x, whose key is %q", key, id, PackKey(id))
		}
	})
}
