package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRestoreAfterAKilledRestore kills `ferry restore` with kill -9 the
// moment it creates the file it builds the database in, which stays
// behind; the next restore to the same output removes it, succeeds, and
// leaves nothing but the database, whose hash is the source's.
func TestRestoreAfterAKilledRestore(t *testing.T) {
	bin := ferryBinary(t)
	b := buildReplica(t, bin, replicaKinds["file"](t), 3, false)
	dir := t.TempDir()
	out := filepath.Join(dir, "restored.db")

	// inotify reports the file's creation: the kill comes before the
	// restore has fetched anything into it.
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "restore", "-o", out, b.url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	created := make(chan string, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if err != nil {
				close(created)
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				nameLen := int(binary.NativeEndian.Uint32(buf[off+12 : off+16]))
				name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+nameLen], "\x00"))
				off += unix.SizeofInotifyEvent + nameLen
				if strings.HasPrefix(name, ".restored.db.ferry-restore-") {
					created <- name
					return
				}
			}
		}
	}()
	var left string
	select {
	case left = <-created:
	case <-time.After(time.Minute):
		t.Fatalf("the restore created no file in a minute: %s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(dir, left)); err != nil {
		t.Fatalf("the killed restore left nothing to clean up (%v); the test proves nothing", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the killed restore finished")
	}

	if r := runBin(t, bin, "restore", "-o", out, b.url); r.code != 0 {
		t.Fatalf("restore after the killed one: %d %s", r.code, r.stderr)
	}
	integrityOK(t, out)
	if got, want := sha3sum(t, out), b.hashes[b.last]; got != want {
		t.Fatalf("restored hash %s, want %s", got, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "restored.db" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the directory holds %q, want the restored database alone", names)
	}
}
