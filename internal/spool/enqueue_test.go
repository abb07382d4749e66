package spool

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir, Options{})
	enqueueT(t, s, "up", "x", nil)
	src := filepath.Join(t.TempDir(), "inbox-file")
	os.WriteFile(src, []byte("from the inbox"), 0o644)
	if _, err := s.EnqueueFile("up", nil, src, true); err != nil {
		t.Fatal(err)
	}
	e := claimT(t, s, "up")
	if err := e.UpdatePayload("new"); err != nil {
		t.Fatal(err)
	}
	e2 := claimT(t, s, "up")
	if err := e2.FailPermanently(errors.New("no")); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(filePerm)
		if d.IsDir() {
			want = dirPerm
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("walked only %d names", n)
	}
}

func TestEnqueueFile(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	inbox := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(inbox, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cp := write("copy", "copied")
	if _, err := s.EnqueueFile("files", "c", cp, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cp); err != nil {
		t.Fatalf("copy removed its source: %v", err)
	}
	mv := write("move", "moved")
	if _, err := s.EnqueueFile("files", "m", mv, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mv); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("move left its source: %v", err)
	}
	want := map[string]string{"c": "copied", "m": "moved"}
	// Across file systems a move falls back to a copy.
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		other, err := os.MkdirTemp("/dev/shm", "ferry-spool-test")
		if err == nil {
			defer os.RemoveAll(other)
			p := filepath.Join(other, "x")
			os.WriteFile(p, []byte("other fs"), 0o600)
			if _, err := s.EnqueueFile("files", "x", p, true); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("cross-fs move left its source: %v", err)
			}
			want["x"] = "other fs"
		}
	}
	// A symlink in the inbox ships what it points to; the link goes, the
	// target stays.
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("pointed at"), 0o644)
	link := filepath.Join(inbox, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnqueueFile("files", "l", link, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("moved symlink still there: %v", err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("symlink target changed: %v %v", fi, err)
	}
	want["l"] = "pointed at"
	if _, err := s.EnqueueFile("files", nil, inbox, false); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("EnqueueFile of a directory = %v", err)
	}
	if _, err := s.EnqueueFile("files", nil, filepath.Join(inbox, "missing"), true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("EnqueueFile of a missing file = %v", err)
	}
	for range s.Len("files") {
		e := claimT(t, s, "files")
		var p string
		e.Payload(&p)
		if got := readData(t, e); got != want[p] {
			t.Errorf("entry %s: data %q, want %q", p, got, want[p])
		}
		delete(want, p)
		e.Done()
	}
	if len(want) != 0 {
		t.Fatalf("entries never seen: %v", want)
	}
	tmpEmpty(t, dir)
}

func TestDiskFullLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBytes: 1 << 20})
	// Writes to /dev/full fail with ENOSPC, as on a full file system.
	s.createData = func(string, bool) (fdFile, error) {
		fd, err := openFd("/dev/full", syscall.O_WRONLY, 0)
		return fdFile{fd, "/dev/full"}, err
	}
	_, err := s.Enqueue("up", nil, writeBytes([]byte("will not fit")))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "file system full") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Enqueue on a full disk = %v", err)
	}
	if s.Len("up") != 0 || s.Bytes() != 0 || s.reserved != 0 {
		t.Fatalf("Len=%d Bytes=%d reserved=%d", s.Len("up"), s.Bytes(), s.reserved)
	}
	tmpEmpty(t, dir)
	if names := listDir(t, queueDir(dir, "up")); len(names) > 1 {
		t.Fatalf("queue holds %v", names)
	}
	// Space comes back.
	s.createData = openEntryFile
	enqueueT(t, s, "up", "fits now", nil)
	mustCheckOK(t, dir, time.Now())
}

func TestWriteErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	boom := errors.New("source vanished")
	_, err := s.Enqueue("up", nil, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Enqueue = %v", err)
	}
	if _, err := s.Enqueue("Bad/Name", nil, writeBytes(nil)); err == nil {
		t.Fatal("Enqueue to an invalid queue name succeeded")
	}
	if _, err := s.Enqueue("up", func() {}, writeBytes(nil)); err == nil {
		t.Fatal("Enqueue with an unencodable payload succeeded")
	}
	if s.Len("up") != 0 || s.Bytes() != 0 || s.reserved != 0 {
		t.Fatalf("Len=%d Bytes=%d reserved=%d", s.Len("up"), s.Bytes(), s.reserved)
	}
	tmpEmpty(t, dir)
}

func TestValidNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"up": true, "seg.db-1_x": true, "failed": true, "9": true,
		"": false, ".": false, "..": false, "-x": false, "Up": false, "a/b": false,
		strings.Repeat("a", 65): false,
	} {
		if validQueue(name) != ok {
			t.Errorf("validQueue(%q) = %v", name, !ok)
		}
	}
	if _, ok := parseID("00000000000000000001-0000000g"); ok {
		t.Error("parseID accepted a non-hex suffix")
	}
	if n, ok := parseID("00000000000000000042-deadbeef"); !ok || n != 42 {
		t.Errorf("parseID = %d, %v", n, ok)
	}
}
