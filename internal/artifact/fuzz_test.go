package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzParseManifest checks that the manifest parser never panics, refuses
// with ErrInvalid, accepts nothing unsafe, and that what it accepts
// survives a round trip through JSON.
func FuzzParseManifest(f *testing.F) {
	data := buildTarBytes(f,
		tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "d/a", typ: tar.TypeReg, body: "hello", mode: 0o755},
		tarEntry{name: "l", typ: tar.TypeSymlink, link: "d/a"},
	)
	good, _ := json.Marshal(manifestFor(data))
	f.Add(good)
	f.Add([]byte(`{"version":1,"created":"2024-01-01T00:00:00Z","tar_size":0,"tar_sha256":"` + strings.Repeat("0", 64) + `","entries":[]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"../x","type":"file"}]}`))
	f.Add([]byte(`{"version":1,"created":"2024-01-01T00:00:00Z","tar_size":9,"tar_sha256":"` + strings.Repeat("0", 64) +
		`","entries":[{"path":"a","type":"dir","mode":"0755"},{"path":"a/up","type":"symlink","link":"../.."},{"path":"a/x","type":"symlink","link":"up/.."}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ix, err := parseManifest("k", b, 64)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		if len(ix) != len(m.Entries) {
			t.Fatalf("index of %d for %d entries", len(ix), len(m.Entries))
		}
		var files int64
		for _, e := range m.Entries {
			if checkPath(e.Path) != nil || strings.HasPrefix(e.Link, "/") {
				t.Fatalf("accepted unsafe entry %+v", e)
			}
			files += e.Size
		}
		if files > m.TarSize {
			t.Fatalf("accepted %d bytes of files in a tar of %d", files, m.TarSize)
		}
		// What was accepted survives encoding and decoding unchanged.
		again, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		m2, _, err := parseManifest("k", again, 64)
		if err != nil {
			t.Fatalf("re-encoded manifest refused: %v", err)
		}
		if !reflect.DeepEqual(m.Entries, m2.Entries) || m.TarSHA256 != m2.TarSHA256 || !m.Created.Equal(m2.Created) {
			t.Fatalf("manifest changed in a round trip:\n%+v\n%+v", m, m2)
		}
	})
}

// fixedManifest is what FuzzUnpack checks arbitrary tars against, next to
// the manifest an honest uploader would have written for them.
func fixedManifest() (Manifest, entryIndex) {
	m := Manifest{Version: 1, TarSize: 1 << 20, TarSHA256: strings.Repeat("0", 64), Entries: []Entry{
		{Path: "d", Type: TypeDir, Mode: ModeExec},
		{Path: "d/f", Type: TypeFile, Mode: ModeExec, Size: 5, SHA256: sum256([]byte("hello"))},
		{Path: "l", Type: TypeSymlink, Link: "d/f"},
		{Path: "e", Type: TypeFile, Mode: ModeFile, SHA256: sum256(nil)},
	}}
	ix, err := m.validate("k")
	if err != nil {
		panic(err)
	}
	return m, ix
}

// FuzzUnpack feeds arbitrary bytes to the tar unpacker, against the
// manifest an honest uploader would have written for them and against a
// fixed one, and checks that nothing lands outside staging and nothing
// unsafe lands inside it. Each run touches the disk, so minimising a new
// input takes minutes at the default setting; run it as
//
//	go test -run XXX -fuzz FuzzUnpack -fuzztime 60s -fuzzminimizetime 2s ./internal/artifact/
func FuzzUnpack(f *testing.F) {
	reg := func(name, body string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, body: body} }
	f.Add(buildTarBytes(f, tarEntry{name: "d/", typ: tar.TypeDir}, reg("d/f", "hello"), tarEntry{name: "l", typ: tar.TypeSymlink, link: "d/f"}, reg("e", "")))
	f.Add(buildTarBytes(f, reg("../evil", "x")))
	f.Add(buildTarBytes(f, reg("/tmp/evil", "x")))
	f.Add(buildTarBytes(f, tarEntry{name: "l", typ: tar.TypeSymlink, link: "../.."}, reg("l/evil", "x")))
	f.Add(buildTarBytes(f, tarEntry{name: "d", typ: tar.TypeSymlink, link: "/tmp"}, reg("d/f", "hello")))
	f.Add(buildTarBytes(f, reg("e", ""), tarEntry{name: "evil", typ: tar.TypeLink, link: "e"}))
	f.Add(buildTarBytes(f, tarEntry{name: "evil", typ: tar.TypeChar}))
	f.Add(buildTarBytes(f, reg("e", ""), reg("e", "again")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Staging directories sit two levels below the test's temporary
		// directory, so that a write that climbs out of them still lands
		// where the checks below look.
		base := t.TempDir()
		root := filepath.Join(base, "a", "b")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		honest := manifestFor(data)
		if ix, err := honest.validate("k"); err == nil {
			unpackInto(t, root, "honest", data, &honest, ix)
		}
		fixed, ix := fixedManifest()
		unpackInto(t, root, "fixed", data, &fixed, ix)

		for dir, want := range map[string][]string{
			base:                     {"a"},
			filepath.Join(base, "a"): {"b"},
			root:                     {"fixed", "honest"},
		} {
			for _, name := range listDir(t, dir) {
				if !slices.Contains(want, name) {
					t.Fatalf("unpacking wrote %s outside staging", filepath.Join(dir, name))
				}
			}
		}
	})
}

// unpackInto unpacks data into ROOT/name and checks that whatever it left
// there, success or not, stays inside: only files, directories and
// symlinks, with artifact modes, and links that resolve within.
func unpackInto(t *testing.T, root, name string, data []byte, m *Manifest, ix entryIndex) {
	staging := filepath.Join(root, name)
	if err := os.Mkdir(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenRoot(staging)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	unpack(context.Background(), "k", bytes.NewReader(data), r, m, ix)

	filepath.WalkDir(staging, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == staging {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		switch mode := fi.Mode(); {
		case mode.IsRegular():
			if perm := mode.Perm(); perm != 0o644 && perm != 0o755 && perm != 0o600 {
				// 0600 is a file whose content check failed before chmod.
				t.Fatalf("%s has mode %v", p, mode)
			}
		case mode.IsDir():
		case mode&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			resolved := filepath.Join(filepath.Dir(p), target)
			if filepath.IsAbs(target) || !strings.HasPrefix(resolved+"/", staging+"/") {
				t.Fatalf("symlink %s -> %s leads out of staging", p, target)
			}
		default:
			t.Fatalf("%s is a %v", p, mode.Type())
		}
		return nil
	})
}
