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

// TestRenamedIntoASubdirectoryIsTakenAtOnce renames files into a
// directory of the inbox, and into one after it moved within the inbox:
// on the rig's clock, which does not move, each is handed over without
// its quiet period once a scan has seen the directory where it is.
func TestRenamedIntoASubdirectoryIsTakenAtOnce(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	r := start(t, dir, true)
	if err := os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"two", "three", "four"} {
		os.WriteFile(filepath.Join(outside, name), []byte(name), 0o644)
	}
	r.fullScan(t)
	renameIn := func(from, to string, want ...string) {
		t.Helper()
		if err := os.Rename(filepath.Join(outside, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
		r.until(t, to+" handed over", func() bool { return len(r.keys) == len(want) })
		if got := r.got(); !slices.Equal(got, want) {
			t.Fatalf("handed over %v before any quiet period passed, want %v", got, want)
		}
	}
	renameIn("two", "sub/two", "sub/two")
	renameIn("three", "sub/deeper/three", "sub/two", "sub/deeper/three")
	if err := os.Rename(filepath.Join(dir, "sub"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	r.fullScan(t)
	renameIn("four", "moved/deeper/four", "sub/two", "sub/deeper/three", "moved/deeper/four")
}
