package inbox_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRenamedInIsTakenAtOnce renames a file, and a directory of files,
// into the inbox, and renames a file from a temporary name within it: on
// the rig's clock, which does not move, each is handed over without its
// quiet period. A file written in place beside them still waits for it.
func TestRenamedInIsTakenAtOnce(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	r := start(t, dir, true)
	os.WriteFile(filepath.Join(dir, "in-place"), []byte("w"), 0o644)
	os.WriteFile(filepath.Join(dir, "upload.part"), []byte("p"), 0o644)
	os.WriteFile(filepath.Join(outside, "one"), []byte("1"), 0o644)
	os.Mkdir(filepath.Join(outside, "batch"), 0o755)
	for i := range 3 {
		os.WriteFile(filepath.Join(outside, "batch", fmt.Sprintf("f%d", i)), []byte{byte(i)}, 0o644)
	}
	r.fullScan(t)
	for _, mv := range [][2]string{
		{filepath.Join(outside, "one"), filepath.Join(dir, "one")},
		{filepath.Join(outside, "batch"), filepath.Join(dir, "batch")},
		{filepath.Join(dir, "upload.part"), filepath.Join(dir, "upload.bin")},
	} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"batch/f0", "batch/f1", "batch/f2", "one", "upload.bin"}
	r.until(t, "the files renamed in handed over", func() bool { return len(r.keys) >= len(want) })
	r.fullScan(t)
	got := r.got()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("handed over %v before any quiet period passed, want %v", got, want)
	}
	r.advance(quiet)
	r.until(t, "the file written in place handed over after its quiet period", func() bool { return len(r.keys) == len(want)+1 })
}
