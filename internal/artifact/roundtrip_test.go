package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// makeTree builds the directory every round trip ships: nested and empty
// directories, empty files, an executable, an owner-only file whose mode
// is normalised, in-directory symlinks and a 5 MiB file.
func makeTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	big := make([]byte, 5<<20)
	rand.Read(big)
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"a.txt", []byte("hello\n"), 0o644},
		{"empty", nil, 0o644},
		{"bin/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755},
		{"bin/secret", []byte("owner only"), 0o600},
		{"deep/er/still/empty-too", nil, 0o640},
		{"deep/er/big.bin", big, 0o644},
		{"deep/er/prog", []byte{0x7f, 'E', 'L', 'F'}, 0o700},
		// Longer than the 100 bytes a plain tar header holds.
		{"deep/" + strings.Repeat("long-name-", 15) + ".txt", []byte("pax"), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "void/nothing"), 0o700); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"link-to-a":          "a.txt",
		"deep/er/up":         "../../bin/run.sh",
		"deep/er/still/here": ".",
		"dangling":           "void/not-there",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// wantMode is what an artifact makes of a source entry's mode.
func wantMode(fi fs.FileInfo) fs.FileMode {
	switch {
	case fi.IsDir():
		return fs.ModeDir | 0o755
	case fi.Mode()&fs.ModeSymlink != 0:
		return fi.Mode()
	case fi.Mode()&0o100 != 0:
		return 0o755
	}
	return 0o644
}

// sameTree checks that got holds exactly what src holds: types, bytes,
// link targets, and modes as an artifact normalises them.
func sameTree(t *testing.T, src, got string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		seen[rel] = true
		want, _ := os.Lstat(p)
		gfi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if gfi.Mode() != wantMode(want) {
			t.Errorf("%s: mode %v, want %v", rel, gfi.Mode(), wantMode(want))
		}
		switch {
		case want.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(filepath.Join(got, rel))
			if !bytes.Equal(a, b) {
				t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(b), len(a))
			}
		case want.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(filepath.Join(got, rel))
			if a != b {
				t.Errorf("%s: links to %q, want %q", rel, b, a)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(got, p)
		if err == nil && rel != "." && !seen[rel] {
			t.Errorf("%s: downloaded but not in the source", rel)
		}
		return nil
	})
	if fi, err := os.Stat(got); err != nil || fi.Mode() != fs.ModeDir|0o755 {
		t.Errorf("destination mode %v (%v), want drwxr-xr-x", fi.Mode(), err)
	}
}

func TestRoundTrip(t *testing.T) {
	src := makeTree(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st := b.open(t)
			ctx := context.Background()
			up, err := Upload(ctx, st, "builds/app/v1", src, UploadOptions{TempDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(up.Entries); n != 18 {
				t.Errorf("manifest has %d entries, want 18", n)
			}

			work := t.TempDir()
			dest := filepath.Join(work, "absent")
			down, err := Download(ctx, st, "builds/app/v1", dest, DownloadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if down.TarSHA256 != up.TarSHA256 || len(down.Entries) != len(up.Entries) {
				t.Errorf("download's manifest differs from upload's")
			}
			sameTree(t, src, dest)

			empty := filepath.Join(work, "empty")
			if err := os.Mkdir(empty, 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := Download(ctx, st, "builds/app/v1", empty, DownloadOptions{}); err != nil {
				t.Fatal(err)
			}
			sameTree(t, src, empty)
			if names := listDir(t, work); strings.Join(names, " ") != "absent empty" {
				t.Errorf("work directory holds %v, want only the two destinations", names)
			}

			peek, err := Peek(ctx, st, "builds/app/v1")
			if err != nil || peek.TarSHA256 != up.TarSHA256 {
				t.Errorf("Peek: %v", err)
			}
		})
	}
}

func TestRoundTripEmptyDir(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	m, err := Upload(ctx, st, "empty", t.TempDir(), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 0 {
		t.Fatalf("empty directory gave %d entries", len(m.Entries))
	}
	work := t.TempDir()
	dest := filepath.Join(work, "d")
	// What a download killed part way left: its staging directory goes.
	left := filepath.Join(work, ".d"+stagingInfix+"123")
	if err := os.MkdirAll(filepath.Join(left, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "sub", "half"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Download(ctx, st, "empty", dest, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, dest); len(names) != 0 {
		t.Errorf("empty artifact unpacked to %v", names)
	}
	if got := strings.Join(listDir(t, work), " "); got != "d" {
		t.Errorf("the download's directory holds %q, want d alone", got)
	}
}

func TestDownloadRefusesNonEmptyDest(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	if _, err := Upload(ctx, st, "k", src, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	full := filepath.Join(work, "full")
	os.Mkdir(full, 0o755)
	os.WriteFile(filepath.Join(full, "keep"), []byte("mine"), 0o600)
	file := filepath.Join(work, "file")
	os.WriteFile(file, []byte("mine"), 0o600)
	link := filepath.Join(work, "link")
	os.Symlink(t.TempDir(), link)

	for _, dest := range []string{full, file, link} {
		_, err := Download(ctx, st, "k", dest, DownloadOptions{})
		mustErr(t, err, ErrDestNotEmpty, dest)
	}
	if b, err := os.ReadFile(filepath.Join(full, "keep")); err != nil || string(b) != "mine" {
		t.Errorf("non-empty destination was touched: %q, %v", b, err)
	}
	if got := strings.Join(listDir(t, full), " "); got != "keep" {
		t.Errorf("destination holds %q, want just keep", got)
	}
	if got := strings.Join(listDir(t, work), " "); got != "file full link" {
		t.Errorf("work directory holds %q, want no staging left", got)
	}
	_, err := Download(ctx, st, "k", filepath.Join(work, "missing-parent", "dest"), DownloadOptions{})
	mustErr(t, err, nil, "missing-parent")
}

// TestDownloadDestFilledMeanwhile fills the destination while the tar is
// being fetched: the final rename must refuse it and leave it alone.
func TestDownloadDestFilledMeanwhile(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("artifact"), 0o644)
	if _, err := Upload(ctx, mem, "k", src, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"empty-dir", "absent"} {
		t.Run(dest, func(t *testing.T) {
			work := t.TempDir()
			dest := filepath.Join(work, dest)
			if filepath.Base(dest) == "empty-dir" {
				os.Mkdir(dest, 0o755)
			}
			st := &getHookStore{Store: mem, key: TarKey("k"), hook: func() {
				if filepath.Base(dest) == "empty-dir" {
					os.WriteFile(filepath.Join(dest, "theirs"), []byte("keep"), 0o644)
				} else {
					os.WriteFile(dest, []byte("keep"), 0o644)
				}
			}}
			_, err := Download(ctx, st, "k", dest, DownloadOptions{})
			mustErr(t, err, ErrDestNotEmpty)
			p := dest
			if filepath.Base(dest) == "empty-dir" {
				p = filepath.Join(dest, "theirs")
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "keep" {
				t.Errorf("what appeared at the destination was touched: %q, %v", b, err)
			}
			if names := listDir(t, work); len(names) != 1 {
				t.Errorf("work directory holds %v; staging left behind?", names)
			}
		})
	}
}

// getHookStore runs hook when the object key is fetched.
type getHookStore struct {
	objstore.Store
	key  string
	hook func()
}

func (s *getHookStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if key == s.key {
		s.hook()
	}
	return s.Store.Get(ctx, key, rng)
}

func TestDownloadMissingArtifact(t *testing.T) {
	st := memstore.New()
	// A tar without a manifest is an upload that did not finish.
	st.Put(context.Background(), TarKey("half"), bytes.NewReader([]byte("x")), objstore.PutOptions{})
	_, err := Download(context.Background(), st, "half", filepath.Join(t.TempDir(), "d"), DownloadOptions{})
	mustErr(t, err, objstore.ErrNotFound, "half.manifest.json")
}

func TestUploadRefuses(t *testing.T) {
	cases := map[string]struct {
		setup func(t *testing.T, dir string)
		want  string
	}{
		"symlink out": {func(t *testing.T, dir string) {
			os.Symlink("../outside", filepath.Join(dir, "escape"))
		}, `"escape"`},
		"absolute symlink": {func(t *testing.T, dir string) {
			os.Symlink("/etc/passwd", filepath.Join(dir, "abs"))
		}, `"abs"`},
		"symlink out through another": {func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "a/b"), 0o755)
			os.Symlink("../..", filepath.Join(dir, "a/b/up"))
			os.Symlink("b/up/..", filepath.Join(dir, "a/esc"))
		}, `"a/esc"`},
		"socket": {func(t *testing.T, dir string) {
			l, err := net.Listen("unix", filepath.Join(dir, "sock"))
			if err != nil {
				t.Skip("no unix sockets here:", err)
			}
			t.Cleanup(func() { l.Close() })
		}, "sock is a socket"},
		"fifo": {func(t *testing.T, dir string) {
			if err := unix.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
				t.Skip("no fifos here:", err)
			}
		}, "pipe is a fifo"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "ferry-art") // short: socket paths are limited
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			os.WriteFile(filepath.Join(dir, "ok"), []byte("fine"), 0o644)
			c.setup(t, dir)
			st := memstore.New()
			_, err = Upload(context.Background(), st, "k", dir, UploadOptions{TempDir: t.TempDir()})
			mustErr(t, err, nil, c.want)
			for info := range st.List(context.Background(), "") {
				t.Errorf("refused upload stored %s", info.Key)
			}
		})
	}
}

func TestUploadRefusesTempInsideDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	_, err := Upload(context.Background(), memstore.New(), "k", dir, UploadOptions{TempDir: dir})
	mustErr(t, err, nil, "temporary tar")
}

func TestUploadEntryLimit(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	_, err := Upload(context.Background(), memstore.New(), "k", dir, UploadOptions{MaxEntries: 2})
	mustErr(t, err, nil, "more than 2 entries")
}

func TestKeys(t *testing.T) {
	for _, k := range []string{"", "dir/"} {
		if _, err := Upload(context.Background(), memstore.New(), k, t.TempDir(), UploadOptions{}); err == nil {
			t.Errorf("key %q accepted", k)
		}
	}
	if TarKey("x") != "x.tar" || ManifestKey("x") != "x.manifest.json" || LeaseKey("x") != "x.lease" {
		t.Error("key layout changed")
	}
}

func TestWriteText(t *testing.T) {
	m := Manifest{Version: 1, TarSize: 3072, TarSHA256: strings.Repeat("ab", 32), Entries: []Entry{
		{Path: "d", Type: TypeDir, Mode: ModeExec},
		{Path: "d/run", Type: TypeFile, Mode: ModeExec, Size: 5, SHA256: strings.Repeat("0", 64)},
		{Path: "evil\x1b[2Jname", Type: TypeFile, Mode: ModeFile, Size: 1, SHA256: strings.Repeat("1", 64)},
		{Path: "l", Type: TypeSymlink, Link: "d/run"},
	}}
	var buf bytes.Buffer
	if err := m.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"2 files (6 bytes), 1 directories, 1 symlinks", "drwxr-xr-x", "-rwxr-xr-x            5  000000000000  d/run", `"evil\x1b[2Jname"`, "l -> d/run"} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("listing passes an escape sequence through:\n%q", out)
	}
}
