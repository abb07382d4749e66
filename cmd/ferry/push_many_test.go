package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
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
// SIGKILL while it spools them (a random moment after its first entry
// reaches the queue), several times over the same spool. Whatever each
// kill left queued must be whole (fsck-clean, and each entry, alone or a
// bundle, the data of the files its keys name), and a final push -wait
// ships it all: the replica then holds every file once spooled, with its
// bytes.
func TestPushKilledWhileSpooling(t *testing.T) {
	bin := ferryBinary(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	want := writeTree(t, src, 4000)
	// A few files too large to bundle among the small ones, and one
	// of the largest size that is bundled.
	for i := range 5 {
		key := fmt.Sprintf("d%02d/large%d", i, i)
		data := bytes.Repeat([]byte{byte('a' + i)}, uploader.BundleFileMax+i)
		if err := os.WriteFile(filepath.Join(src, filepath.FromSlash(key)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[key] = data
	}
	root := filepath.Join(dir, "spool")
	queue := filepath.Join(root, "files", "q", uploader.FilesQueue)
	replica := filepath.Join(dir, "replica")
	url := "file://" + replica
	interrupted := 0
	for i := range 6 {
		before := queuedEntries(t, queue)
		cmd := exec.Command(bin, "push", "-spool", root, src, url)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		// The kill lands once the push has queued its first entry,
		// within the time the rest takes it.
	watch:
		for queuedEntries(t, queue) <= before {
			select {
			case <-exited:
				break watch
			case <-time.After(time.Millisecond):
			}
		}
		time.Sleep(time.Duration(mrand.IntN(40)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if !strings.Contains(stderr.String(), "spooled") {
			interrupted++
		}
		rep, _ := spool.Check(filepath.Join(root, "files"), spool.Limits{}, time.Now())
		t.Logf("kill %d: %d entries queued; %s", i+1, rep.Entries, stderr.String())
	}
	if interrupted == 0 {
		t.Fatal("every push finished before its kill: the test killed none while spooling")
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
		if err != nil {
			t.Fatal(err)
		}
		if len(job.Files) == 0 {
			job.Files = []uploader.BundledFile{{Key: job.Key, Size: int64(len(got))}}
		}
		parts, err := job.Parts(got)
		if err != nil {
			t.Fatalf("entry %s: %v", e.ID(), err)
		}
		for i, f := range job.Files {
			if !bytes.Equal(parts[i], want[f.Key]) {
				t.Fatalf("entry %s holds %d bytes for %s, want the file's %d", e.ID(), len(parts[i]), f.Key, len(want[f.Key]))
			}
		}
		files := job.Files
		queued += len(files) // left checked out: the next Open puts it back
	}
	sp.Close()
	t.Logf("%d files queued after the kills", queued)

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
	var bundles atomic.Int32
	up := uploader.New(sp, func(ctx context.Context, u string) (objstore.Store, error) {
		return target.OpenURL(ctx, u, target.Options{})
	}, uploader.Options{Shipped: func(_ spool.ID, job uploader.Job) {
		if len(job.Files) > 0 {
			bundles.Add(1)
		}
	}})
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
	if bundles.Load() == 0 {
		t.Fatal("the daemon shipped no bundle: the small files were handed over one by one")
	}
}

// queuedEntries counts the entries in the queue directory dir.
func queuedEntries(t testing.TB, dir string) int {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	n := 0
	for _, de := range names {
		if de.Name() != "checkout" {
			n++
		}
	}
	return n
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

// TestPushWaitToS3 pushes, with -wait, a tree of small files (which
// travel through the spool in bundles) and a few too large to bundle to
// a real S3 server, and reads every object back: each file under its own
// key, with its bytes and its checksum.
func TestPushWaitToS3(t *testing.T) {
	srv := testenv.S3(t)
	bucket := testenv.Bucket(t, srv)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	want := writeTree(t, src, 2*pushBatchFiles+40)
	for i := range 3 {
		key := fmt.Sprintf("large/f%d", i)
		data := bytes.Repeat([]byte{byte('k' + i)}, uploader.BundleFileMax+1+i*100000)
		if err := os.MkdirAll(filepath.Join(src, "large"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, filepath.FromSlash(key)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[key] = data
	}
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	url := fmt.Sprintf("s3://%s/tree?endpoint=%s&region=%s&force-path-style=true", bucket, srv.Endpoint, srv.Region)
	r := runFerry(t, "push", "-wait", "-spool", filepath.Join(dir, "spool"), src, url)
	if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("%d file(s) durable", len(want))) {
		t.Fatalf("push -wait: exit %d: %s", r.code, r.stderr)
	}
	bucketHolds(t, url, want)
}

// bucketHolds checks that the replica at url holds exactly the objects
// of want, each with its bytes and its checksum.
func bucketHolds(t *testing.T, url string, want map[string][]byte) {
	t.Helper()
	store, err := target.OpenURL(context.Background(), url, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for info, err := range store.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		data, ok := want[info.Key]
		if !ok {
			t.Fatalf("the bucket holds %s, which was not pushed", info.Key)
		}
		rc, _, err := store.Get(context.Background(), info.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes back (%v), pushed %d", info.Key, len(got), err, len(data))
		}
		head, err := store.Head(context.Background(), info.Key)
		sum := sha256.Sum256(data)
		if err != nil || head.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: checksum %q (%v), want the bytes' %x", info.Key, head.SHA256, err, sum)
		}
		n++
	}
	if n != len(want) {
		t.Fatalf("the bucket holds %d objects, want %d", n, len(want))
	}
}

// TestPushWaitKilledWhileUploading kills `ferry push -wait` of a tree of
// small files to a real S3 server with SIGKILL while it uploads them (a
// random moment after its uploader first holds an entry, bundles being
// sent), four times over the same spool, and then lets one run to the
// end. The bucket must then hold every file, with its bytes and its
// checksum, and nothing else; the spool must be empty and fsck-clean.
func TestPushWaitKilledWhileUploading(t *testing.T) {
	srv := testenv.S3(t)
	bin := ferryBinary(t)
	bucket := testenv.Bucket(t, srv)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	want := writeTree(t, src, 3000)
	root := filepath.Join(dir, "spool")
	checkout := filepath.Join(root, "files", "q", uploader.FilesQueue, "checkout")
	url := fmt.Sprintf("s3://%s/tree?endpoint=%s&region=%s&force-path-style=true", bucket, srv.Endpoint, srv.Region)
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)
	interrupted := 0
	for range 4 {
		cmd := exec.Command(bin, "push", "-wait", "-spool", root, src, url)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
	watch:
		for queuedEntries(t, checkout) == 0 {
			select {
			case <-exited:
				break watch
			case <-time.After(time.Millisecond):
			}
		}
		time.Sleep(time.Duration(mrand.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if !strings.Contains(stderr.String(), "durable") {
			interrupted++
		}
	}
	if interrupted == 0 {
		t.Fatal("every push finished before its kill: the test killed none while uploading")
	}
	t.Logf("%d of 4 pushes killed while uploading", interrupted)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	r := runFerry(t, "push", "-wait", "-spool", root, src, url)
	if r.code != 0 {
		t.Fatalf("push -wait after the kills: exit %d: %s", r.code, r.stderr)
	}
	bucketHolds(t, url, want)
	rep, err := spool.Check(filepath.Join(root, "files"), spool.Limits{}, time.Now())
	if err != nil || !rep.OK() || rep.Entries != 0 {
		t.Fatalf("spool after the last push -wait: %+v, %v", rep, err)
	}
}
