package uploader_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/uploader"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// bundleOf returns a bundle job for files (key -> bytes, in keys' order)
// to targets, and its data.
func bundleOf(keys []string, files map[string]string, targets ...string) (uploader.Job, []byte) {
	job := uploader.Job{Pending: targets}
	var data []byte
	for _, k := range keys {
		sum := sha256.Sum256([]byte(files[k]))
		job.Files = append(job.Files, uploader.BundledFile{Key: k, Size: int64(len(files[k])), SHA256: hex.EncodeToString(sum[:])})
		data = append(data, files[k]...)
	}
	return job, data
}

// spoolBundle spools job with data as one entry of the files queue.
func (r *rig) spoolBundle(job uploader.Job, data []byte) {
	r.t.Helper()
	b, err := r.sp.NewBatch(uploader.FilesQueue)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := b.AddBytes(job, data); err != nil {
		r.t.Fatal(err)
	}
	if _, err := b.Commit(); err != nil {
		r.t.Fatal(err)
	}
}

// someFiles returns n files of distinct sizes and bytes, the empty one
// among them, and their keys in order.
func someFiles(n int) ([]string, map[string]string) {
	keys := make([]string, n)
	files := map[string]string{}
	for i := range n {
		keys[i] = fmt.Sprintf("b/f%03d", i)
		files[keys[i]] = strings.Repeat(fmt.Sprintf("<%d>", i), i)
	}
	return keys, files
}

// TestBundleShipsEachFile spools 60 files as one bundle for two targets:
// each target ends up holding every file under its own key with its own
// bytes, with one PUT per file, and the entry leaves the spool.
func TestBundleShipsEachFile(t *testing.T) {
	r := newRig(t, "a", "b")
	keys, files := someFiles(60)
	r.spoolBundle(bundleOf(keys, files, "a", "b"))
	r.drain(10 * time.Second)
	if n := r.sp.Len(uploader.FilesQueue); n != 0 {
		t.Fatalf("%d entries left in the spool", n)
	}
	for _, target := range []string{"a", "b"} {
		for _, k := range keys {
			if got := r.content(target, k); got != files[k] {
				t.Fatalf("%s holds %q under %s, want %q", target, got, k, files[k])
			}
		}
		if n := r.stores[target].puts.Load(); n != int32(len(keys)) {
			t.Fatalf("%s got %d PUTs for %d files", target, n, len(keys))
		}
	}
}

// flakyStore fails the first PUT of the key fail with a 503.
type flakyStore struct {
	objstore.Store
	fail   string
	failed atomic.Bool
}

func (f *flakyStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if key == f.fail && f.failed.CompareAndSwap(false, true) {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, StatusCode: 503, Err: errors.New("slow down")}
	}
	return f.Store.Put(ctx, key, body, opts)
}

// TestBundleRetrySendsOnlyWhatIsMissing fails one file of a bundle once:
// the bundle is retried, and the retry sends only the file the target
// does not hold (it asks for each before sending it).
func TestBundleRetrySendsOnlyWhatIsMissing(t *testing.T) {
	r := newRig(t, "a")
	keys, files := someFiles(30)
	flaky := &flakyStore{Store: memstore.New(), fail: keys[17]}
	r.stores["a"].Store = flaky
	// One worker, so that the files before the failing one have all been
	// sent when it fails: the first failure stops the files not yet sent.
	r.spoolBundle(bundleOf(keys, files, "a"))
	ctx, cancel := context.WithCancel(context.Background())
	u := uploader.New(r.sp, r.open, uploader.Options{Workers: 1})
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	for r.sp.Len(uploader.FilesQueue) > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !flaky.failed.Load() {
		t.Fatal("the store never failed")
	}
	for _, k := range keys {
		if got := r.content("a", k); got != files[k] {
			t.Fatalf("%s holds %q, want %q", k, got, files[k])
		}
	}
	// 18 PUTs up to and including the failed one, then the 13 files from
	// it on: none of the 17 already there is sent again.
	if n := r.stores["a"].puts.Load(); n != 18+13 {
		t.Fatalf("%d PUTs, want %d: the retry sent files the target held", n, 18+13)
	}
}

// TestBundleFailsWholeOnARefusal refuses one file of a bundle for good:
// the bundle goes to the failed queue, whole, with a reason naming that
// file.
func TestBundleFailsWholeOnARefusal(t *testing.T) {
	r := newRig(t, "a")
	keys, files := someFiles(10)
	r.stores["a"].Store = refusingStore{Store: memstore.New(), key: keys[4]}
	r.spoolBundle(bundleOf(keys, files, "a"))
	r.drain(5 * time.Second)
	failed, err := r.sp.Failed()
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || r.sp.Len(uploader.FilesQueue) != 0 {
		t.Fatalf("%d failed entries and %d queued, want the bundle failed", len(failed), r.sp.Len(uploader.FilesQueue))
	}
	if !strings.Contains(failed[0].Reason, keys[4]) {
		t.Fatalf("failed with %q, which does not name %s", failed[0].Reason, keys[4])
	}
	if failed[0].Size != int64(len(bytes.Join(func() [][]byte {
		var all [][]byte
		for _, k := range keys {
			all = append(all, []byte(files[k]))
		}
		return all
	}(), nil))) {
		t.Fatalf("the failed entry holds %d bytes, not the whole bundle", failed[0].Size)
	}
}

type refusingStore struct {
	objstore.Store
	key string
}

func (s refusingStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if key == s.key {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, StatusCode: 403, Err: errors.New("access denied")}
	}
	return s.Store.Put(ctx, key, body, opts)
}

// TestMalformedBundleIsNotShipped spools bundles whose description does
// not match their data, or names a bad key, or lacks a checksum: each
// goes to the failed queue and not a byte of it reaches the store.
func TestMalformedBundleIsNotShipped(t *testing.T) {
	r := newRig(t, "a")
	keys, files := someFiles(5)
	job, data := bundleOf(keys, files, "a")
	short := job
	r.spoolBundle(short, data[:len(data)-1])
	badKey := job
	badKey.Files = append([]uploader.BundledFile(nil), job.Files...)
	badKey.Files[2].Key = "../out"
	r.spoolBundle(badKey, data)
	noSum := job
	noSum.Files = append([]uploader.BundledFile(nil), job.Files...)
	noSum.Files[1].SHA256 = ""
	r.spoolBundle(noSum, data)
	withKey := job
	withKey.Key = "k"
	r.spoolBundle(withKey, data)
	r.drain(5 * time.Second)
	failed, err := r.sp.Failed()
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 4 {
		t.Fatalf("%d failed entries, want 4", len(failed))
	}
	if n := r.stores["a"].puts.Load(); n != 0 {
		t.Fatalf("%d PUTs of malformed bundles", n)
	}
}

// inFlightStore records the most PUTs it had in flight at once.
type inFlightStore struct {
	objstore.Store
	mu       sync.Mutex
	now, top int
}

func (s *inFlightStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	s.mu.Lock()
	s.now++
	s.top = max(s.top, s.now)
	s.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	defer func() {
		s.mu.Lock()
		s.now--
		s.mu.Unlock()
	}()
	return s.Store.Put(ctx, key, body, opts)
}

// TestBundleSendsSideBySideWithinWorkers ships two bundles and a file
// alone with 3 workers: the files of a bundle go out side by side, and
// never more than 3 requests at once.
func TestBundleSendsSideBySideWithinWorkers(t *testing.T) {
	r := newRig(t, "a")
	s := &inFlightStore{Store: memstore.New()}
	r.stores["a"].Store = s
	keys, files := someFiles(80)
	r.spoolBundle(bundleOf(keys[:40], files, "a"))
	r.spoolBundle(bundleOf(keys[40:], files, "a"))
	r.enqueue("alone", "by itself", "a")
	r.drain(10 * time.Second)
	if n := r.sp.Len(uploader.FilesQueue); n != 0 {
		t.Fatalf("%d entries left", n)
	}
	if s.top > 3 || s.top < 2 {
		t.Fatalf("at most %d PUTs in flight at once, want 2 or 3 (3 workers)", s.top)
	}
	for _, k := range keys {
		if got := r.content("a", k); got != files[k] {
			t.Fatalf("%s holds %q, want %q", k, got, files[k])
		}
	}
}

// TestBundleJobGolden pins a bundle's payload as the spool stores it.
func TestBundleJobGolden(t *testing.T) {
	keys, files := someFiles(3)
	job, _ := bundleOf(keys, files, "s3://bucket/prefix")
	job.Sealed = true
	got, err := json.MarshalIndent(job, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "bundle-job.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("a bundle's payload changed:\n%s\nwant\n%s", got, want)
	}
	var back uploader.Job
	if err := json.Unmarshal(want, &back); err != nil || len(back.Files) != 3 || back.Files[2] != job.Files[2] || !back.Sealed {
		t.Fatalf("golden payload reads back as %+v, %v", back, err)
	}
}

// TestBundleAdd fills a Bundle from files: it takes files up to
// BundleFileMax, refuses a larger one and one past MaxBundleBytes with
// ErrTooLarge (leaving itself as it was), refuses a bad key and a
// directory, and Job hands over its payload and data and empties it.
func TestBundleAdd(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte(name[:1]), size), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var b uploader.Bundle
	small, most, over := write("a", 100), write("b", uploader.BundleFileMax), write("c", uploader.BundleFileMax+1)
	for _, p := range []string{small, most} {
		if _, err := b.Add(p, "k/"+filepath.Base(p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Add(over, "k/c"); !errors.Is(err, uploader.ErrTooLarge) {
		t.Fatalf("a file past BundleFileMax: %v, want ErrTooLarge", err)
	}
	if _, err := b.Add(small, "../k"); err == nil {
		t.Fatal("a bad key was taken")
	}
	if _, err := b.Add(dir, "k/dir"); err == nil || errors.Is(err, uploader.ErrTooLarge) {
		t.Fatalf("a directory: %v, want an error other than ErrTooLarge", err)
	}
	if b.Len() != 2 || b.Size() != 100+uploader.BundleFileMax {
		t.Fatalf("after refusals the bundle holds %d files, %d bytes", b.Len(), b.Size())
	}
	job, data := b.Job([]string{"u"}, false)
	if len(job.Files) != 2 || job.Files[1].Key != "k/b" || int64(len(data)) != job.Files[0].Size+job.Files[1].Size || b.Len() != 0 || b.Size() != 0 {
		t.Fatalf("Job gave %+v and %d bytes, left %d files", job, len(data), b.Len())
	}
	sum := sha256.Sum256(data[:100])
	if job.Files[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatal("the first file's checksum is not its bytes'")
	}

	// Filled to MaxBundleBytes, it takes no more.
	for i := 0; b.Size()+uploader.BundleFileMax <= uploader.MaxBundleBytes; i++ {
		if _, err := b.Add(most, fmt.Sprintf("m/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Add(small, "m/last"); b.Size() == uploader.MaxBundleBytes && !errors.Is(err, uploader.ErrTooLarge) {
		t.Fatalf("a full bundle: %v, want ErrTooLarge", err)
	}
	if b.Size() > uploader.MaxBundleBytes {
		t.Fatalf("the bundle holds %d bytes, past %d", b.Size(), uploader.MaxBundleBytes)
	}
}
