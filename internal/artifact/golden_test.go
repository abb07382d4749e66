package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from today's writer")

// The golden artifact is stored under goldenDir at its object keys: the
// tar and the manifest that Upload wrote for goldenKey. Artifacts stay in
// buckets across upgrades, so today's Download must go on reading them,
// and Upload must go on writing exactly these bytes until the manifest's
// format version changes on purpose.
const goldenKey = "golden"

var goldenDir = filepath.Join("testdata", "v1")

// goldenMTime is the modification time of the golden files; the tar
// records it, so it is fixed for the tar to be reproducible.
var goldenMTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// makeGoldenTree builds the golden input: a file of each mode, an empty
// file, a symlink, and nested directories, one of them empty. Git keeps
// neither modes nor empty directories, so the tree is built here rather
// than kept in testdata/.
func makeGoldenTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	for _, d := range []string{"a", "z/nested"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"a/file.txt", "hello, ferry\n", 0o644},
		{"a/run.sh", "#!/bin/sh\necho ferry\n", 0o755},
		{"empty.dat", "", 0o600}, // stored as 0644: modes are normalised
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, goldenMTime, goldenMTime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a/file.txt", filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// createdField matches the manifest's creation time, the one field that
// Upload takes from the clock.
var createdField = regexp.MustCompile(`"created":"[^"]*"`)

// TestGoldenWrite uploads the golden tree with today's Upload and requires
// the golden tar and manifest byte for byte, except for the manifest's
// creation time: Upload stamps it with time.Now and takes no clock, so
// that field is checked to be a fresh UTC time and then replaced by the
// golden file's before the comparison.
func TestGoldenWrite(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	before := time.Now().Add(-time.Second)
	if _, err := Upload(ctx, st, goldenKey, makeGoldenTree(t), UploadOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Second)
	gotTar := getObject(t, st, TarKey(goldenKey))
	gotManifest := getObject(t, st, ManifestKey(goldenKey))

	var head struct{ Created time.Time }
	if err := json.Unmarshal(gotManifest, &head); err != nil {
		t.Fatal(err)
	}
	if head.Created.Before(before) || head.Created.After(after) || head.Created.Location() != time.UTC {
		t.Errorf("manifest created %s, want a UTC time between %s and %s", head.Created, before, after)
	}
	tarPath := filepath.Join(goldenDir, TarKey(goldenKey))
	manifestPath := filepath.Join(goldenDir, ManifestKey(goldenKey))
	if *update {
		gotManifest = createdField.ReplaceAll(gotManifest, []byte(`"created":"2025-03-01T12:00:00.123456789Z"`))
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for p, data := range map[string][]byte{tarPath: gotTar, manifestPath: gotManifest} {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("wrote %s and %s", tarPath, manifestPath)
		return
	}
	wantTar := readGolden(t, tarPath)
	wantManifest := readGolden(t, manifestPath)
	if !bytes.Equal(gotTar, wantTar) {
		t.Errorf("Upload's tar (%d bytes) differs from %s (%d bytes): the artifact format changed", len(gotTar), tarPath, len(wantTar))
	}
	created := createdField.Find(wantManifest)
	if created == nil {
		t.Fatalf("%s has no created field", manifestPath)
	}
	if n := len(createdField.FindAll(gotManifest, -1)); n != 1 {
		t.Fatalf("Upload's manifest has %d created fields, want 1:\n%s", n, gotManifest)
	}
	gotManifest = createdField.ReplaceAll(gotManifest, created)
	if !bytes.Equal(gotManifest, wantManifest) {
		t.Errorf("Upload's manifest differs from %s: the manifest format changed; "+
			"a changed format needs a new version number, and the old version must stay readable.\ngot:\n%s\nwant:\n%s",
			manifestPath, gotManifest, wantManifest)
	}
}

// TestGoldenRead reads and downloads the golden artifact with today's
// reader and checks every field against values written out here, not
// derived from the writer, so that a change to writer and reader together
// still fails.
func TestGoldenRead(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	for _, key := range []string{TarKey(goldenKey), ManifestKey(goldenKey)} {
		data := readGolden(t, filepath.Join(goldenDir, key))
		if _, err := st.Put(ctx, key, bytes.NewReader(data), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := Manifest{
		Version:   1,
		Created:   time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC),
		TarSize:   5632,
		TarSHA256: "3f8069b6c748bdc11bf5f981d890248b090ead2e1e6dec188d0f74aa41082f36",
		Entries: []Entry{
			{Path: "a", Type: TypeDir, Mode: 0o755},
			{Path: "a/file.txt", Type: TypeFile, Mode: 0o644, Size: 13, SHA256: "f27c2cf6a103e25dd6c60b8bac57b7ca056e1b2eb910ff3e1af72d773fecc146"},
			{Path: "a/run.sh", Type: TypeFile, Mode: 0o755, Size: 21, SHA256: "9996fcd0380630c041d126f0e535ca58e89754e593f5606df27e9414a7cee979"},
			{Path: "b", Type: TypeSymlink, Link: "a/file.txt"},
			{Path: "empty.dat", Type: TypeFile, Mode: 0o644, Size: 0, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
			{Path: "z", Type: TypeDir, Mode: 0o755},
			{Path: "z/nested", Type: TypeDir, Mode: 0o755},
		},
	}
	m, err := Peek(ctx, st, goldenKey)
	if err != nil {
		t.Fatalf("read golden manifest: %v", err)
	}
	if !m.Created.Equal(want.Created) || !reflect.DeepEqual(withoutCreated(m), withoutCreated(want)) {
		t.Errorf("manifest =\n%+v\nwant\n%+v", m, want)
	}

	dest := filepath.Join(t.TempDir(), "dest")
	dm, err := Download(ctx, st, goldenKey, dest, DownloadOptions{})
	if err != nil {
		t.Fatalf("download golden artifact: %v", err)
	}
	if !reflect.DeepEqual(withoutCreated(dm), withoutCreated(want)) {
		t.Errorf("Download's manifest =\n%+v\nwant\n%+v", dm, want)
	}
	for _, f := range []struct {
		path, data string
		mode       os.FileMode
	}{
		{"a/file.txt", "hello, ferry\n", 0o644},
		{"a/run.sh", "#!/bin/sh\necho ferry\n", 0o755},
		{"empty.dat", "", 0o644},
	} {
		p := filepath.Join(dest, f.path)
		data, err := os.ReadFile(p)
		if err != nil || string(data) != f.data {
			t.Errorf("%s holds %q, %v; want %q", f.path, data, err, f.data)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, %v; want %v", f.path, fi.Mode().Perm(), err, f.mode)
		}
	}
	if link, err := os.Readlink(filepath.Join(dest, "b")); err != nil || link != "a/file.txt" {
		t.Errorf("b links to %q, %v; want a/file.txt", link, err)
	}
	for _, d := range []string{".", "a", "z", "z/nested"} {
		if fi, err := os.Stat(filepath.Join(dest, d)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, %v; want a directory of mode 0755", d, fi, err)
		}
	}
	if des, err := os.ReadDir(filepath.Join(dest, "z", "nested")); err != nil || len(des) != 0 {
		t.Errorf("z/nested holds %v, %v; want nothing", des, err)
	}
}

func withoutCreated(m Manifest) Manifest {
	m.Created = time.Time{}
	return m
}

func getObject(t *testing.T, st objstore.Store, key string) []byte {
	t.Helper()
	rc, _, err := st.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readGolden(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create the golden files)", err)
	}
	return data
}
