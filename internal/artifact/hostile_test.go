package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// hostileEnv is a download into ROOT/l1/l2/work/dest, deep enough that a
// path climbing three levels out of the staging directory still lands
// inside ROOT, where the test can look for it.
type hostileEnv struct {
	root, work, dest string
}

func newHostileEnv(t *testing.T) hostileEnv {
	root := t.TempDir()
	work := filepath.Join(root, "l1", "l2", "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	return hostileEnv{root: root, work: work, dest: filepath.Join(work, "dest")}
}

// refused checks what every refused download must leave: an error
// matching ErrInvalid that names the problem, no destination, no staging
// directory, and nothing called evil anywhere under the test's root.
func (h hostileEnv) refused(t *testing.T, err error, want ...string) {
	t.Helper()
	t.Logf("refused: %v", err)
	mustErr(t, err, ErrInvalid, want...)
	if _, serr := os.Lstat(h.dest); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("destination exists after a refused download (%v)", serr)
	}
	if names := listDir(t, h.work); len(names) != 0 {
		t.Errorf("work directory holds %v after a refused download", names)
	}
	if found := findNamed(t, h.root, "evil"); len(found) != 0 {
		t.Errorf("files written outside staging: %v", found)
	}
	if names := listDir(t, h.root); !slices.Equal(names, []string{"l1"}) {
		t.Errorf("test root holds %v", names)
	}
	if names := listDir(t, filepath.Dir(h.work)); !slices.Equal(names, []string{"work"}) {
		t.Errorf("work's parent holds %v", names)
	}
}

func TestDownloadRefusesHostileTars(t *testing.T) {
	reg := func(name, body string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, body: body} }
	dir := func(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
	sym := func(name, link string) tarEntry { return tarEntry{name: name, typ: tar.TypeSymlink, link: link} }
	ok := reg("fine.txt", "harmless")

	cases := []struct {
		name string
		tar  func(root string) []tarEntry
		// bad names the entries an honest manifest would list but a
		// cleaned one leaves out, so that the tar itself is tested too.
		bad  []string
		want string
		// honest is also in the error when the manifest lists everything.
		honest string
	}{
		{"traversal", func(string) []tarEntry { return []tarEntry{ok, reg("../evil", "pwned")} },
			[]string{"../evil"}, `"../evil"`, ""},
		{"deep traversal", func(string) []tarEntry {
			return []tarEntry{ok, dir("sub/"), reg("sub/../../../evil", "pwned")}
		}, []string{"sub/../../../evil"}, `"sub/../../../evil"`, ""},
		{"absolute", func(root string) []tarEntry { return []tarEntry{ok, reg(root+"/evil", "pwned")} },
			[]string{"*"}, "absolute path", ""},
		{"symlink out", func(string) []tarEntry { return []tarEntry{ok, sym("evil", "../x")} },
			[]string{"evil"}, `"evil"`, "resolves outside"},
		{"symlink out through another symlink", func(string) []tarEntry {
			return []tarEntry{dir("a/"), dir("a/b/"), sym("a/b/up", "../.."), sym("a/evil", "b/up/..")}
		}, []string{"a/evil"}, `"a/evil"`, "resolves outside"},
		{"symlink out, then a file through it", func(string) []tarEntry {
			return []tarEntry{ok, sym("link", "../../.."), reg("link/evil", "pwned")}
		}, []string{"link", "link/evil"}, `"link"`, ""},
		{"absolute symlink, then a file through it", func(root string) []tarEntry {
			return []tarEntry{ok, sym("link", root), reg("link/evil", "pwned")}
		}, []string{"link", "link/evil"}, `"link"`, ""},
		{"symlink out through another, then a file through it", func(string) []tarEntry {
			return []tarEntry{dir("a/"), dir("a/b/"), sym("a/b/up", "../.."), sym("a/esc", "b/up/.."), reg("a/esc/evil", "pwned")}
		}, []string{"a/esc", "a/esc/evil"}, `"a/esc"`, ""},
		{"file through an in-tree symlink", func(string) []tarEntry {
			return []tarEntry{dir("d/"), sym("l", "d"), reg("l/evil", "pwned")}
		}, []string{"l/evil"}, `"l/evil"`, ""},
		{"hard link", func(string) []tarEntry {
			return []tarEntry{ok, {name: "evil", typ: tar.TypeLink, link: "fine.txt"}}
		}, nil, "hard link", ""},
		{"hard link out", func(root string) []tarEntry {
			return []tarEntry{ok, {name: "evil", typ: tar.TypeLink, link: root + "/l1"}}
		}, nil, "hard link", ""},
		{"character device", func(string) []tarEntry {
			return []tarEntry{ok, {name: "evil", typ: tar.TypeChar}}
		}, nil, "device", ""},
		{"block device", func(string) []tarEntry {
			return []tarEntry{ok, {name: "evil", typ: tar.TypeBlock}}
		}, nil, "device", ""},
		{"fifo", func(string) []tarEntry { return []tarEntry{ok, {name: "evil", typ: tar.TypeFifo}} },
			nil, "fifo", ""},
		{"duplicate", func(string) []tarEntry { return []tarEntry{reg("twice", "first"), reg("twice", "second")} },
			[]string{"dup"}, `"twice"`, ""},
		{"file before its directory", func(string) []tarEntry {
			return []tarEntry{reg("d/evil", "early"), dir("d/")}
		}, []string{"reorder"}, `"d/evil"`, ""},
	}
	for _, c := range cases {
		for _, variant := range []string{"honest manifest", "cleaned manifest"} {
			if variant == "cleaned manifest" && c.bad == nil {
				continue // the manifest cannot list these types at all
			}
			t.Run(c.name+"/"+variant, func(t *testing.T) {
				h := newHostileEnv(t)
				data := buildTarBytes(t, c.tar(h.root)...)
				m := manifestFor(data)
				if variant == "cleaned manifest" {
					m.Entries = clean(m.Entries, c.bad)
				}
				st := memstore.New()
				putArtifact(t, st, "k", data, m)
				_, err := Download(context.Background(), st, "k", h.dest, DownloadOptions{})
				want := []string{c.want}
				if variant == "honest manifest" && c.honest != "" {
					want = append(want, c.honest)
				}
				h.refused(t, err, want...)
			})
		}
	}
}

// clean drops the listed entries from a manifest ("*" drops absolute ones,
// "dup" keeps the first of duplicates, "reorder" puts directories first).
func clean(entries []Entry, bad []string) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, e := range entries {
		switch {
		case slices.Contains(bad, e.Path),
			slices.Contains(bad, "*") && strings.HasPrefix(e.Path, "/"),
			slices.Contains(bad, "dup") && seen[e.Path]:
			continue
		}
		seen[e.Path] = true
		out = append(out, e)
	}
	if slices.Contains(bad, "reorder") {
		slices.SortStableFunc(out, func(a, b Entry) int {
			return strings.Compare(string(b.Type), string(a.Type)) // "file" < "dir"
		})
	}
	return out
}

func TestDownloadRefusesDisagreeingManifest(t *testing.T) {
	data := buildTarBytes(t,
		tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "d/a", typ: tar.TypeReg, body: "hello"},
		tarEntry{name: "b", typ: tar.TypeReg, body: "world"},
		tarEntry{name: "l", typ: tar.TypeSymlink, link: "b"},
	)
	find := func(m *Manifest, p string) *Entry {
		for i := range m.Entries {
			if m.Entries[i].Path == p {
				return &m.Entries[i]
			}
		}
		panic(p)
	}
	cases := []struct {
		name string
		edit func(m *Manifest)
		want []string
	}{
		{"wrong file sha", func(m *Manifest) { find(m, "d/a").SHA256 = sum256([]byte("other")) }, []string{`"d/a"`, "sha256"}},
		{"missing from tar", func(m *Manifest) {
			m.Entries = append(m.Entries, Entry{Path: "c", Type: TypeFile, Mode: ModeFile, SHA256: sum256(nil)})
		}, []string{`"c"`, "not in the tar"}},
		{"extra in tar", func(m *Manifest) {
			m.Entries = slices.DeleteFunc(m.Entries, func(e Entry) bool { return e.Path == "b" })
		},
			[]string{`"b"`, "not in the manifest"}},
		{"file bigger than manifest says", func(m *Manifest) { find(m, "b").Size = 3 }, []string{`"b"`, "5 bytes in the tar but 3"}},
		{"file smaller than manifest says", func(m *Manifest) { find(m, "b").Size = 9 }, []string{`"b"`, "5 bytes in the tar but 9"}},
		{"wrong type", func(m *Manifest) {
			*find(m, "l") = Entry{Path: "l", Type: TypeFile, Mode: ModeFile, SHA256: sum256(nil)}
		},
			[]string{`"l"`, "symlink in the tar but a file"}},
		{"wrong link", func(m *Manifest) { find(m, "l").Link = "d/a" }, []string{`"l"`, `links to "b" in the tar`}},
		{"odd mode", func(m *Manifest) { find(m, "b").Mode = 0o4755 }, []string{`"b"`, "mode"}},
		{"wrong tar sha", func(m *Manifest) { m.TarSHA256 = sum256([]byte("x")) }, []string{"k.tar has sha256"}},
		{"tar longer than manifest says", func(m *Manifest) { m.TarSize -= 512 }, []string{"k.tar"}},
		{"tar shorter than manifest says", func(m *Manifest) { m.TarSize += 512 }, []string{"k.tar"}},
		{"sizes beyond the tar", func(m *Manifest) { m.TarSize = 4 }, []string{"more than the tar's 4 bytes"}},
		{"duplicate in manifest", func(m *Manifest) { m.Entries = append(m.Entries, m.Entries[2]) }, []string{`"b"`, "twice"}},
		{"newer version", func(m *Manifest) { m.Version = 2 }, []string{"version 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHostileEnv(t)
			m := manifestFor(data)
			c.edit(&m)
			st := memstore.New()
			putArtifact(t, st, "k", data, m)
			_, err := Download(context.Background(), st, "k", h.dest, DownloadOptions{})
			h.refused(t, err, c.want...)
		})
	}
}

func TestDownloadRefusesBadManifests(t *testing.T) {
	data := buildTarBytes(t, tarEntry{name: "a", typ: tar.TypeReg, body: "x"})
	good := manifestFor(data)
	cases := []struct {
		name     string
		manifest string
		opts     DownloadOptions
		want     string
	}{
		{"not json", "{nope", DownloadOptions{}, "not valid JSON"},
		{"no version", `{"entries":[]}`, DownloadOptions{}, "no format version"},
		{"unknown field", `{"version":1,"created":"2024-01-01T00:00:00Z","tar_size":1,"tar_sha256":"` + good.TarSHA256 + `","entries":[],"extra":1}`, DownloadOptions{}, `unknown field "extra"`},
		{"trailing data", `{"version":1,"created":"2024-01-01T00:00:00Z","tar_size":1,"tar_sha256":"` + good.TarSHA256 + `","entries":[]} {}`, DownloadOptions{}, "JSON"},
		{"missing field", `{"version":1,"created":"2024-01-01T00:00:00Z","tar_sha256":"` + good.TarSHA256 + `","entries":[]}`, DownloadOptions{}, `"tar_size" is missing`},
		{"too many entries", `{"version":1,"entries":[{},{},{}]}`, DownloadOptions{MaxEntries: 2}, "more than 2 entries"},
		{"over a small cap", strings.Repeat(" ", 200) + `{"version":1}`, DownloadOptions{MaxManifestBytes: 100}, "more than the limit of 100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHostileEnv(t)
			st := memstore.New()
			putRaw(t, st, "k", data, []byte(c.manifest))
			_, err := Download(context.Background(), st, "k", h.dest, c.opts)
			h.refused(t, err, c.want)
		})
	}
}

// TestDownloadRefusesHugeManifest checks that a manifest over the default
// cap is refused without being read into memory.
func TestDownloadRefusesHugeManifest(t *testing.T) {
	h := newHostileEnv(t)
	mem := memstore.New()
	huge := bytes.Repeat([]byte(" "), DefaultMaxManifestBytes+1)
	putRaw(t, mem, "k", []byte("tar"), huge)
	st := &countingStore{Store: mem, read: map[string]*int64{}}
	_, err := Download(context.Background(), st, "k", h.dest, DownloadOptions{})
	h.refused(t, err, "k.manifest.json", "limit")
	if n := st.read["k.manifest.json"]; n != nil && *n > DefaultMaxManifestBytes+1 {
		t.Errorf("read %d bytes of an oversized manifest", *n)
	}
	if st.read["k.tar"] != nil {
		t.Error("fetched the tar of an artifact whose manifest was refused")
	}
	_, err = Peek(context.Background(), st, "k")
	mustErr(t, err, ErrInvalid, "limit")
}

func TestDownloadRefusesCorruptTar(t *testing.T) {
	src := makeTree(t)
	for _, at := range []string{"header", "content", "end"} {
		t.Run(at, func(t *testing.T) {
			h := newHostileEnv(t)
			st := memstore.New()
			if _, err := Upload(context.Background(), st, "k", src, UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			rc, _, err := st.Get(context.Background(), TarKey("k"), nil)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			buf.ReadFrom(rc)
			rc.Close()
			data := buf.Bytes()
			switch at {
			case "header":
				data[100] ^= 0x01 // the first header's mode field
			case "content":
				data[len(data)/2] ^= 0x80 // inside big.bin
			case "end":
				data[len(data)-1] ^= 0x01 // end-of-archive padding
			}
			st.Corrupt(TarKey("k"), data)
			_, err = Download(context.Background(), st, "k", h.dest, DownloadOptions{})
			if !errors.Is(err, objstore.ErrCorrupt) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is neither corrupt nor invalid", err)
			}
			h.refused(t, errors.Join(err, ErrInvalid))
		})
	}
}

// TestRootStopsEscapes takes the manifest's and tar's checks away and
// checks that the last line of defence, os.Root, still refuses to write
// through a link that leaves staging.
func TestRootStopsEscapes(t *testing.T) {
	outside := t.TempDir()
	staging := t.TempDir()
	root, err := os.OpenRoot(staging)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for i, target := range []string{outside, "../" + filepath.Base(outside)} {
		link := "link" + string(rune('0'+i))
		if err := root.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		e := &Entry{Path: link + "/evil", Type: TypeFile, Mode: ModeFile, SHA256: sum256(nil)}
		if err := writeFile(root, e, strings.NewReader(""), make([]byte, 512)); err == nil {
			t.Errorf("wrote through a symlink to %s", target)
		}
		if err := makeDir(root, &Entry{Path: link + "/evil", Type: TypeDir, Mode: ModeExec}); err == nil {
			t.Errorf("made a directory through a symlink to %s", target)
		}
	}
	if names := listDir(t, outside); len(names) != 0 {
		t.Errorf("written outside staging: %v", names)
	}
}
