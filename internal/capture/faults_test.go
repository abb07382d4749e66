package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/spool"
)

// faultyStore is a store that can be taken down (every call fails as a
// 503 would) and that counts the calls made to it.
type faultyStore struct {
	objstore.Store
	down  atomic.Bool
	calls atomic.Int64
}

var errDown = &objstore.Error{Op: "put", StatusCode: 503, Err: errors.New("service unavailable")}

func (s *faultyStore) check() error {
	s.calls.Add(1)
	if s.down.Load() {
		return errDown
	}
	return nil
}

func (s *faultyStore) Put(ctx context.Context, key string, body io.ReadSeeker, o objstore.PutOptions) (objstore.Info, error) {
	if err := s.check(); err != nil {
		return objstore.Info{}, err
	}
	return s.Store.Put(ctx, key, body, o)
}

func (s *faultyStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if err := s.check(); err != nil {
		return nil, objstore.Info{}, err
	}
	return s.Store.Get(ctx, key, rng)
}

func (s *faultyStore) Head(ctx context.Context, key string) (objstore.Info, error) {
	if err := s.check(); err != nil {
		return objstore.Info{}, err
	}
	return s.Store.Head(ctx, key)
}

func (s *faultyStore) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	if err := s.check(); err != nil {
		return func(yield func(objstore.Info, error) bool) { yield(objstore.Info{}, err) }
	}
	return s.Store.List(ctx, prefix)
}

func (s *faultyStore) Delete(ctx context.Context, keys ...string) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.Delete(ctx, keys...)
}

// commits makes n commits of the workload and returns the hash after the
// last.
func commits(t *testing.T, w *workload, n int, path string) string {
	t.Helper()
	for range n {
		if err := w.step(); err != nil {
			t.Fatal(err)
		}
	}
	return sha3(t, path)
}

// TestIdleCostsNothing checks that an idle database costs no request at
// all, snapshot interval or not.
func TestIdleCostsNothing(t *testing.T) {
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	store := &faultyStore{Store: memstore.New()}
	o := testOptions(dir, db, map[string]objstore.Store{"mem://idle": store})
	o.SnapshotInterval = 50 * time.Millisecond
	r := startReplicator(t, o)
	w := newWorkload(openApp(t, db), 1, 1000)
	commits(t, w, 20, db)
	last := r.sync(t)
	// The periodic snapshot of those commits is the last request the
	// database is owed; wait for it to be stored rather than guess how
	// long it takes.
	waitSnapshot(t, r, last)
	// The snapshot may also land before the last change set, which is
	// then still owed its upload.
	for deadline := time.Now().Add(60 * time.Second); r.Status().SpoolSegments > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("change sets still spooled after 60s: %+v", r.Status())
		}
	}
	// From here on nothing may happen, so the window can only be a length
	// of time. A slow machine runs fewer of the replicator's passes in it,
	// which weakens the check but cannot fail it.
	before := store.calls.Load()
	time.Sleep(time.Second)
	if n := store.calls.Load() - before; n != 0 {
		t.Fatalf("an idle database cost %d requests in a second", n)
	}
}

// waitSnapshot waits until every target's newest snapshot is at txid.
func waitSnapshot(t *testing.T, r *replicator, txid uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := r.Status()
		done := len(st.Targets) > 0
		for _, ts := range st.Targets {
			done = done && ts.Snapshot == txid
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at txid %d within 60s: %+v", txid, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTargetDownSpoolFull takes one of two targets down until the spool
// overflows. The healthy target must keep replicating every transaction;
// the one that was down gets its backlog dropped, a gap, and a snapshot
// that restores it once it is back.
func TestTargetDownSpoolFull(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	good := memstore.New()
	bad := &faultyStore{Store: memstore.New()}
	o := testOptions(dir, db, map[string]objstore.Store{"mem://good": good, "mem://bad": bad})
	o.MaxSpoolBytes = 512 << 10
	o.SpoolBackoff = spool.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	r := startReplicator(t, o)
	base := r.sync(t)
	w := newWorkload(openApp(t, db), 7, 10_000)
	hashes := map[int]string{0: sha3(t, db)}
	bad.down.Store(true)
	dropped := func() bool {
		for _, ts := range r.Status().Targets {
			if ts.URL == "mem://bad" && !ts.Synced {
				return true
			}
		}
		return false
	}
	for !dropped() {
		if w.k >= 1000 {
			t.Fatal("the spool never overflowed")
		}
		h := commits(t, w, 10, db)
		hashes[w.k] = h
		time.Sleep(10 * time.Millisecond)
	}
	if st := r.Status(); st.SpoolBytes > o.MaxSpoolBytes {
		t.Fatalf("spool holds %d bytes, more than its bound %d", st.SpoolBytes, o.MaxSpoolBytes)
	}
	mid := w.k
	h := commits(t, w, 10, db)
	hashes[w.k] = h
	bad.down.Store(false)
	h = commits(t, w, 10, db)
	hashes[w.k] = h
	last := r.sync(t)
	st := r.Status()
	if len(st.Gaps) == 0 {
		t.Fatalf("no gap recorded: %+v", st)
	}
	for _, g := range st.Gaps {
		if g.Target != "mem://bad" {
			t.Fatalf("gap on the healthy target: %+v", g)
		}
	}
	t.Logf("gaps after %d commits: %+v", mid, st.Gaps)
	checkLatest(t, good, dir, hashes[w.k], w.k, last)
	checkLatest(t, bad, dir, hashes[w.k], w.k, last)
	// The healthy target restores every commit, the gap included.
	var ks []int
	for k := range hashes {
		if len(ks) < 12 {
			ks = append(ks, k)
		}
	}
	checkSamples(t, good, dir, base, last, hashes, ks)
}

// TestRestartResumes stops and restarts ferry while the application keeps
// its log: ferry must carry on from the saved position, numbering every
// commit, with no new snapshot.
func TestRestartResumes(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://restart": store})
	app := openApp(t, db, "PRAGMA wal_autocheckpoint=0")
	w := newWorkload(app, 3, 10_000)
	hashes := map[int]string{}
	r := startReplicator(t, o)
	base := r.sync(t)
	for range 3 {
		h := commits(t, w, 15, db)
		hashes[w.k] = h
		r.sync(t)
		r.stop()
		h = commits(t, w, 15, db)
		hashes[w.k] = h
		r = startReplicator(t, o)
	}
	last := r.sync(t)
	if want := base + uint64(w.k); last != want {
		t.Fatalf("%d commits after txid %d ended at txid %d, want %d", w.k, base, last, want)
	}
	if n := snapshotCount(t, store); n != 1 {
		t.Fatalf("%d snapshots; restarts that find the log intact need none", n)
	}
	var ks []int
	for k := range hashes {
		ks = append(ks, k)
	}
	checkSamples(t, store, dir, base, last, hashes, ks)
}

// TestStateLost deletes the spool, capture state included, between runs:
// the replica must go on numbering after everything it holds, so that old
// txids keep restoring what they did.
func TestStateLost(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://lost": store})
	w := newWorkload(openApp(t, db), 5, 10_000)
	r := startReplicator(t, o)
	base := r.sync(t)
	h20 := commits(t, w, 20, db)
	first := r.sync(t)
	r.stop()
	if err := os.RemoveAll(o.SpoolDir); err != nil {
		t.Fatal(err)
	}
	r = startReplicator(t, o)
	restart := r.sync(t)
	if restart <= first {
		t.Fatalf("after the state was lost, txid %d follows txid %d", restart, first)
	}
	h30 := commits(t, w, 10, db)
	last := r.sync(t)
	checkSamples(t, store, dir, base, first, map[int]string{20: h20}, []int{20})
	checkLatest(t, store, dir, h30, 30, last)
}

// TestPageSizes replicates databases with the smallest and the largest
// page sizes SQLite has; with 64 KiB pages a chunk is one page.
func TestPageSizes(t *testing.T) {
	needCLI(t)
	for _, ps := range []int{512, 65536} {
		t.Run(fmt.Sprint(ps), func(t *testing.T) {
			dir := t.TempDir()
			db := newDB(t, dir, ps, appSchema...)
			store := memstore.New()
			r := startReplicator(t, testOptions(dir, db, map[string]objstore.Store{"mem://ps": store}))
			base := r.sync(t)
			w := newWorkload(openApp(t, db), 9, 60)
			hashes := map[int]string{}
			for range 3 {
				h := commits(t, w, 20, db)
				hashes[w.k] = h
			}
			last := r.sync(t)
			out, res := restoreAt(t, store, 0, dir)
			if res.PageSize != ps {
				t.Fatalf("restored page size %d, want %d", res.PageSize, ps)
			}
			os.Remove(out)
			checkSamples(t, store, filepath.Dir(db), base, last, hashes, []int{20, 40, 60})
		})
	}
}

// TestChangedWhileDown changes the database in ways no log records while
// ferry is stopped: the page size (which needs leaving WAL mode and a
// VACUUM), then the whole file (replaced by another database). Each time
// the restarted replicator must notice, and the replica must restore the
// database as it now is.
func TestChangedWhileDown(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://changed": store})
	r := startReplicator(t, o)
	r.sync(t)
	app := openApp(t, db)
	w := newWorkload(app, 11, 10_000)
	commits(t, w, 30, db)
	r.sync(t)
	r.stop()

	for _, q := range []string{"PRAGMA journal_mode=DELETE", "PRAGMA page_size=8192", "VACUUM", "PRAGMA journal_mode=WAL"} {
		if _, err := app.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	want := commits(t, w, 5, db)
	app.Close()
	r = startReplicator(t, o)
	last := r.sync(t)
	out, res := restoreAt(t, store, 0, dir)
	if res.PageSize != 8192 || sha3(t, out) != want {
		t.Fatalf("after the page size changed, txid %d restores %d-byte pages, hash %s, want 8192 and %s", last, res.PageSize, sha3(t, out), want)
	}
	r.stop()

	other := newDB(t, t.TempDir(), 1024, appSchema...)
	app2 := openApp(t, other)
	w2 := newWorkload(app2, 12, 10_000)
	want = commits(t, w2, 10, other)
	app2.Close() // the last connection folds the log into the file
	if err := os.Rename(other, db); err != nil {
		t.Fatal(err)
	}
	r = startReplicator(t, o)
	last = r.sync(t)
	checkLatest(t, store, dir, want, 10, last)
}
