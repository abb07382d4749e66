package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from today's writer")

// goldenDir holds the objects of one version 2 snapshot, each file at its
// object key: the manifest and its pack as Write stored them. Buckets
// keep snapshots for as long as users keep replicas, so today's reader
// must go on restoring them, and the writer must go on producing exactly
// these bytes until a new format version is introduced on purpose.
// goldenV1Dir holds the same image as version 1 wrote it, each chunk an
// object of its own: today's writer no longer produces it, and today's
// reader must restore it.
var (
	goldenDir   = filepath.Join("testdata", "v2")
	goldenV1Dir = filepath.Join("testdata", "v1")
)

const (
	goldenTXID      = 1000
	goldenPageSize  = 4096
	goldenPageCount = 40 // 160 KiB: two whole chunks and a short last one
)

var goldenTime = time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)

// goldenImage is the database image of the golden snapshot. Chunk 1 is
// all zeroes, as runs of freed pages are; the other pages differ from
// each other so that every chunk has its own address.
func goldenImage() []byte {
	b := make([]byte, goldenPageSize*goldenPageCount)
	for pgno := 1; pgno <= goldenPageCount; pgno++ {
		if pgno > 16 && pgno <= 32 {
			continue
		}
		p := b[(pgno-1)*goldenPageSize : pgno*goldenPageSize]
		copy(p, "ferry golden page")
		binary.LittleEndian.PutUint32(p[20:], uint32(pgno))
		for i := 64; i < 1024; i++ {
			p[i] = byte(i*pgno*31 + 7)
		}
	}
	copy(b, "SQLite format 3\x00")
	return b
}

// TestGoldenWrite stores the golden image with today's Write and requires
// the very objects of the golden directory, byte for byte. Write is
// deterministic for a fixed commit time: each chunk is one zstd frame from
// EncodeAll at a fixed level, whatever the parallelism.
func TestGoldenWrite(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	opts := Options{Parallelism: 1, packIDs: &sequentialIDs{}}
	if _, _, err := Write(ctx, st, bytes.NewReader(goldenImage()), goldenPageSize, goldenPageCount, goldenTXID, goldenTime, opts); err != nil {
		t.Fatal(err)
	}
	got := storeObjects(t, st)
	if *update {
		if err := os.RemoveAll(goldenDir); err != nil {
			t.Fatal(err)
		}
		for key, data := range got {
			p := filepath.Join(goldenDir, filepath.FromSlash(key))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("wrote %d objects under %s", len(got), goldenDir)
		return
	}
	want := goldenObjects(t, goldenDir)
	if k1, k2 := sortedKeys(got), sortedKeys(want); !slices.Equal(k1, k2) {
		t.Fatalf("Write stored keys\n%v\nthe golden snapshot has\n%v", k1, k2)
	}
	for key, data := range want {
		if bytes.Equal(got[key], data) {
			continue
		}
		if key != ManifestKey(goldenTXID) && packDecodesTo(t, got[key], data) {
			t.Errorf("chunk %s: the compressed bytes differ from the golden file but decode to the same chunk: "+
				"the zstd encoder's output changed, not the format. Keep the old files as reader-only golden files "+
				"(TestGoldenRead must still pass on them) before regenerating with -update", key)
			continue
		}
		t.Errorf("%s: Write stored %d bytes that differ from the golden file's %d: the snapshot format changed; "+
			"a changed format needs a new version number, and the old version must stay readable", key, len(got[key]), len(data))
	}
}

// TestGoldenReadV1 loads and restores the version 1 golden snapshot with
// today's reader and checks every field against values written out here,
// not derived from the writer, so that a change to writer and reader
// together still fails.
func TestGoldenReadV1(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	for key, data := range goldenObjects(t, goldenV1Dir) {
		if _, err := st.Put(ctx, key, bytes.NewReader(data), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	chunks := []Address{
		mustAddress(t, "620990ed14b4a400db5ee718d4bc3e8beebb68f89cf082a75d9f6a57ca5b7997"),
		// The SHA-256 of 64 KiB of zeroes.
		mustAddress(t, "de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31"),
		mustAddress(t, "8876e8e8679c661d24f179645438d52d20eebdf51dbc4e15764074081cee5d99"),
	}
	want := Manifest{
		TXID:      1000,
		Time:      time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC),
		PageSize:  4096,
		PageCount: 40,
		Scheme:    SchemeSHA256,
		Chunks:    chunks,
		DBHash:    mustAddress(t, "ebe5e9abc2b2a69b2d574c9906b86accca9d8b90be2235daeda0832a476d93fe"),
	}

	// The manifest header is pinned byte for byte, as the package
	// documentation lays it out.
	raw, err := os.ReadFile(filepath.Join(goldenV1Dir, "snapshots", "00000000000003e8.manifest"))
	if err != nil {
		t.Fatal(err)
	}
	wantHead := "4645525259534e50" + // magic FERRYSNP
		"0100" + "01" + "01" + // version 1, scheme SHA-256, chunks are zstd frames
		"00100000" + "28000000" + // page size 4096, 40 pages
		"00000100" + "03000000" + "00000000" + // chunk size 64 KiB, 3 chunks, reserved
		"e803000000000000" + // txid 1000
		"7b80338606ac2818" + // 2025-03-01T12:00:00.000000123Z in unix nanoseconds
		"0080020000000000" + // 163840 bytes
		"ebe5e9abc2b2a69b2d574c9906b86accca9d8b90be2235daeda0832a476d93fe" + // database hash
		"f3ae91af" + "00000000" // CRC32C, reserved
	if got := hex.EncodeToString(raw[:manifestHeaderSize]); got != wantHead {
		t.Errorf("manifest header bytes\n%s\nwant\n%s", got, wantHead)
	}
	if len(raw) != 96+3*32+32 {
		t.Errorf("manifest is %d bytes, want %d", len(raw), 96+3*32+32)
	}

	m, err := Load(ctx, st, 1000)
	if err != nil {
		t.Fatalf("load golden manifest: %v", err)
	}
	if m.TXID != want.TXID || !m.Time.Equal(want.Time) || m.Time.Location() != time.UTC || m.PageSize != want.PageSize ||
		m.PageCount != want.PageCount || m.Scheme != want.Scheme || !slices.Equal(m.Chunks, want.Chunks) || m.DBHash != want.DBHash {
		t.Errorf("manifest =\n%+v\nwant\n%+v", m, want)
	}
	if m.Size() != 163840 || m.ChunkLen(0) != 65536 || m.ChunkLen(2) != 32768 {
		t.Errorf("size %d, chunk lengths %d, %d; want 163840, 65536, 32768", m.Size(), m.ChunkLen(0), m.ChunkLen(2))
	}

	infos, err := List(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	wantInfo := ManifestInfo{Key: "snapshots/00000000000003e8.manifest", TXID: 1000, Time: want.Time, PageSize: 4096, PageCount: 40, Size: 163840}
	if len(infos) != 1 || infos[0] != wantInfo {
		t.Errorf("List = %+v, want [%+v]", infos, wantInfo)
	}

	var dst memFile
	if err := Restore(ctx, st, m, &dst, 1, nil); err != nil {
		t.Fatalf("restore golden snapshot: %v", err)
	}
	if !bytes.Equal(dst.buf, goldenImage()) {
		t.Errorf("restored image (%d bytes) differs from the image that was written", len(dst.buf))
	}
	if bad, err := VerifyChunks(ctx, st, m, nil); err != nil || len(bad) != 0 {
		t.Errorf("VerifyChunks = %v, %v", bad, err)
	}
}

// storeObjects returns every object in st by key.
func storeObjects(t *testing.T, st objstore.Store) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	for info, err := range st.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := st.Get(ctx, info.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[info.Key] = data
	}
	return out
}

// goldenObjects returns the golden files by the object key their path
// names.
func goldenObjects(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create the golden files)", err)
	}
	return out
}

// decodesTo reports whether two stored chunks decompress to the same
// bytes.
// packDecodesTo reports whether packs a and b, each zstd frames one after
// another, decode to the same bytes.
func packDecodesTo(t *testing.T, a, b []byte) bool {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	pa, erra := dec.DecodeAll(a, nil)
	pb, errb := dec.DecodeAll(b, nil)
	return erra == nil && errb == nil && bytes.Equal(pa, pb)
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func mustAddress(t *testing.T, s string) Address {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad hex literal %q", s)
	}
	return Address(b)
}

// TestGoldenRead loads and restores the version 2 golden snapshot and
// checks its header, packs and locations against values written out here.
func TestGoldenRead(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	for key, data := range goldenObjects(t, goldenDir) {
		if _, err := st.Put(ctx, key, bytes.NewReader(data), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(goldenDir, "snapshots", "00000000000003e8.manifest"))
	if err != nil {
		t.Fatal(err)
	}
	wantHead := "4645525259534e50" + // magic FERRYSNP
		"0200" + "01" + "01" + // version 2, scheme SHA-256, chunks are zstd frames
		"00100000" + "28000000" + // page size 4096, 40 pages
		"00000100" + "03000000" + "00000000" + // chunk size 64 KiB, 3 chunks, address key
		"e803000000000000" + // txid 1000
		"7b80338606ac2818" + // 2025-03-01T12:00:00.000000123Z in unix nanoseconds
		"0080020000000000" + // 163840 bytes
		"ebe5e9abc2b2a69b2d574c9906b86accca9d8b90be2235daeda0832a476d93fe" + // database hash
		"c71ddfb7" + "01000000" // CRC32C, one pack
	if got := hex.EncodeToString(raw[:manifestHeaderSize]); got != wantHead {
		t.Errorf("manifest header bytes\n%s\nwant\n%s", got, wantHead)
	}
	// Then the three addresses, as in version 1, each pack's id and
	// size, and a location per chunk: pack, offset, length.
	body := raw[manifestHeaderSize+3*32 : len(raw)-32]
	wantBody := "01000000000000000000000000000000" + "8f110000" + // pack id, 4495 bytes
		"00000000" + "00000000" + "9f0b0000" +
		"00000000" + "9f0b0000" + "0b000000" +
		"00000000" + "aa0b0000" + "e5050000"
	if got := hex.EncodeToString(body); got != wantBody {
		t.Errorf("packs and locations\n%s\nwant\n%s", got, wantBody)
	}
	m, err := Load(ctx, st, 1000)
	if err != nil {
		t.Fatalf("load golden manifest: %v", err)
	}
	wantLocs := []Loc{{0, 0, 2975}, {0, 2975, 11}, {0, 2986, 1509}}
	if !slices.Equal(m.Locs, wantLocs) || len(m.Packs) != 1 || m.PackKey(0) != "packs/01/01000000000000000000000000000000" {
		t.Errorf("locations %v in packs %x, want %v in one pack", m.Locs, m.Packs, wantLocs)
	}
	var dst memFile
	if err := Restore(ctx, st, m, &dst, 1, nil); err != nil {
		t.Fatalf("restore golden snapshot: %v", err)
	}
	if !bytes.Equal(dst.buf, goldenImage()) {
		t.Errorf("restored image (%d bytes) differs from the image that was written", len(dst.buf))
	}
	if bad, err := VerifyChunks(ctx, st, m, nil); err != nil || len(bad) != 0 {
		t.Errorf("VerifyChunks = %v, %v", bad, err)
	}
	if err := Check(ctx, st, m, 1); err != nil {
		t.Errorf("Check = %v", err)
	}
}
