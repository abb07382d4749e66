package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/uploader"
)

// writeTree writes n small files of distinct content under dir, in
// subdirectories, and returns each one's key and bytes.
func writeTree(t *testing.T, dir string, n int) map[string][]byte {
	t.Helper()
	want := map[string][]byte{}
	for i := range n {
		key := fmt.Sprintf("d%02d/f%04d", i%7, i)
		data := bytes.Repeat(fmt.Appendf(nil, "[%d]", i), 1+i%300)
		p := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[key] = data
	}
	return want
}

// TestPushWaitManyFiles pushes more files than one spool batch holds, so
// that the uploader ships the first batches while later ones are spooled,
// and checks that every file arrives whole and the spool ends empty.
func TestPushWaitManyFiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FERRY_SPOOL", filepath.Join(dir, "spool"))
	src := filepath.Join(dir, "src")
	want := writeTree(t, src, 3*pushBatchFiles+17)
	replica := filepath.Join(dir, "replica")
	r := runFerry(t, "push", "-wait", "-key", "many", src, "file://"+replica)
	if r.code != 0 {
		t.Fatalf("push -wait: exit %d: %s", r.code, r.stderr)
	}
	for key, data := range want {
		got, err := os.ReadFile(filepath.Join(replica, "many", filepath.FromSlash(key)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s in the replica: %d bytes, %v; want %d bytes", key, len(got), err, len(data))
		}
	}
	sp, err := spool.Open(filepath.Join(dir, "spool", "files"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if n := sp.Len(uploader.FilesQueue); n != 0 {
		t.Fatalf("%d entries left in the spool after push -wait", n)
	}
}

// TestPushKilledWhileSpooling kills `ferry push` of many files with
// SIGKILL at random moments while it spools them, several times over the
// same spool. Whatever each kill left queued must be whole (fsck-clean,
// the data of the file its key names), and a final push -wait ships it
// all: the replica then holds every file once spooled, with its bytes.
func TestPushKilledWhileSpooling(t *testing.T) {
	bin := ferryBinary(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	want := writeTree(t, src, 2000)
	root := filepath.Join(dir, "spool")
	replica := filepath.Join(dir, "replica")
	url := "file://" + replica
	for i := range 6 {
		cmd := exec.Command(bin, "push", "-spool", root, src, url)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+mrand.IntN(1400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		rep, _ := spool.Check(filepath.Join(root, "files"), spool.Limits{}, time.Now())
		t.Logf("kill %d: %d entries queued; %s", i+1, rep.Entries, stderr.String())
	}

	filesDir := filepath.Join(root, "files")
	rep, err := spool.Check(filesDir, spool.Limits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		if p.Kind != spool.KindStaleTmp { // what a kill leaves in tmp/ is the next Open's to sweep
			t.Errorf("after the kills: %s %s: %s", p.Kind, p.Path, p.Detail)
		}
	}
	sp, err := spool.Open(filesDir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	queued := 0
	for {
		e, err := sp.Claim(uploader.FilesQueue)
		if errors.Is(err, spool.ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var job uploader.Job
		if err := e.Payload(&job); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(e.Path())
		if err != nil || !bytes.Equal(got, want[job.Key]) {
			t.Fatalf("entry %s for %s holds %d bytes (%v), want the file's %d", e.ID(), job.Key, len(got), err, len(want[job.Key]))
		}
		queued++ // left checked out: the next Open puts it back
	}
	sp.Close()
	t.Logf("%d entries queued after the kills", queued)

	// One more push, waited for, ships all of it.
	r := runFerry(t, "push", "-wait", "-spool", root, src, url)
	if r.code != 0 {
		t.Fatalf("push -wait: exit %d: %s", r.code, r.stderr)
	}
	for key, data := range want {
		got, err := os.ReadFile(filepath.Join(replica, filepath.FromSlash(key)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s in the replica: %d bytes, %v", key, len(got), err)
		}
	}
	rep, err = spool.Check(filesDir, spool.Limits{}, time.Now())
	if err != nil || !rep.OK() || rep.Entries != 0 {
		t.Fatalf("spool after push -wait: %+v, %v", rep, err)
	}
}

// TestPushWaitHandsOffToDaemon pushes, with -wait, into a spool that a
// daemon holds: the files go through incoming/, the daemon (played here
// by an adopting uploader in this process) ships them, and push watches
// the replica, listing it, until each file is there with its checksum.
func TestPushWaitHandsOffToDaemon(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "spool")
	src := filepath.Join(dir, "src")
	want := writeTree(t, src, 3*listFrom)
	replica := filepath.Join(dir, "replica")
	url := "file://" + replica

	sp, err := spool.Open(filepath.Join(root, "files"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	up := uploader.New(sp, func(ctx context.Context, u string) (objstore.Store, error) {
		return target.OpenURL(ctx, u, target.Options{})
	}, uploader.Options{})
	done := make(chan error, 2)
	go func() { done <- up.Run(ctx) }()
	go func() {
		for {
			if _, err := sp.Adopt(); err != nil {
				done <- err
				return
			}
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()

	r := runFerry(t, "push", "-wait", "-spool", root, src, url)
	if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("%d file(s) durable", len(want))) {
		t.Fatalf("push -wait to a daemon's spool: exit %d: %s", r.code, r.stderr)
	}
	for key, data := range want {
		got, err := os.ReadFile(filepath.Join(replica, filepath.FromSlash(key)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s in the replica: %d bytes, %v", key, len(got), err)
		}
	}
}

func TestKeysDir(t *testing.T) {
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{"a/b/c", "a/b/d"}, "a/b/"},
		{[]string{"a/bc", "a/bd"}, "a/"},
		{[]string{"ab", "ac"}, ""},
		{[]string{"x/y/z"}, "x/y/"},
		{[]string{"up/2026/a.txt", "up/2026/sub/b.txt"}, "up/2026/"},
	} {
		var files []pushFile
		for _, k := range tc.keys {
			files = append(files, pushFile{key: k})
		}
		if got := keysDir(files); got != tc.want {
			t.Errorf("keysDir(%v) = %q, want %q", tc.keys, got, tc.want)
		}
	}
}
