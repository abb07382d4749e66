package scrub_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/scrub"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
	"github.com/ferrydb/ferry/internal/verify"
)

// TestScrubFindsAndRepairs damages a replica that a replicator keeps up to
// date (a deleted chunk, a flipped byte in another, a deleted change set
// in the live chain) and runs a scrub pass: it must name each, repair them
// through the replicator, and leave a replica that verifies clean and
// restores to the live database.
func TestScrubFindsAndRepairs(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	for name, open := range map[string]func(t *testing.T) objstore.Store{
		"file": func(t *testing.T) objstore.Store {
			s, err := filestore.New(filepath.Join(t.TempDir(), "replica"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"s3": func(t *testing.T) objstore.Store {
			srv := testenv.S3(t)
			u := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", testenv.Bucket(t, srv), srv.Endpoint)
			tg, err := config.ParseURL(u)
			if err != nil {
				t.Fatal(err)
			}
			s, err := target.Open(context.Background(), config.Replica{Target: tg, AccessKeyID: config.NewSecret(srv.AccessKey), SecretAccessKey: config.NewSecret(srv.SecretKey)}, target.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	} {
		t.Run(name, func(t *testing.T) { scrubAndRepair(t, open(t)) })
	}
}

func scrubAndRepair(t *testing.T, store objstore.Store) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	exec1 := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec1("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	for i := range 100 {
		exec1("INSERT INTO t (v) VALUES (randomblob(3000))", i)
	}
	const url = "target"
	r, err := capture.Open(ctx, capture.Options{DBPath: dbPath, SpoolDir: filepath.Join(dir, "spool"),
		Targets: map[string]objstore.Store{url: store}, SyncInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Change sets after the snapshot: the live chain runs through them.
	for i := range 5 {
		exec1("UPDATE t SET v = randomblob(3000) WHERE id = ?", i+1)
		if _, err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	base := r.Status().Targets[0].Snapshot

	l, err := layout.Read(ctx, store, layout.All, segment.Heads(store))
	if err != nil {
		t.Fatal(err)
	}
	m, err := snapshot.Load(ctx, store, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Chunks) < 4 || len(l.Segments) < 3 {
		t.Fatalf("want at least 4 chunks and 3 change sets to damage; have %d and %d", len(m.Chunks), len(l.Segments))
	}
	// A byte flipped in the last chunk of the snapshot's pack, which the
	// updates above did not touch (they changed the first rows, and the
	// header page, in chunk 0): the live database still holds it, so the
	// replicator can store it again.
	last := m.Locs[len(m.Chunks)-1]
	flippedPack := m.PackKey(last.Pack)
	lostSet := l.Segments[len(l.Segments)/2]
	if err := store.Delete(ctx, lostSet.Key); err != nil {
		t.Fatal(err)
	}
	rewrite(t, store, flippedPack, func(b []byte) []byte { b[last.Offset+last.Length/2] ^= 0x40; return b })
	if rep, err := verify.Run(ctx, store, true, nil); err != nil || rep.OK() {
		t.Fatalf("the damaged replica verifies: %v %+v", err, rep)
	}

	sc := scrub.New(scrub.Options{Targets: map[string]objstore.Store{url: store}, Repair: r, Interval: time.Millisecond, Share: 1})
	rep, err := sc.Pass(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	found := strings.Join(rep.Damaged, "\n")
	for _, key := range []string{flippedPack, lostSet.Key} {
		if !strings.Contains(found, key) {
			t.Errorf("the scrub did not name %s; it found:\n%s", key, found)
		}
	}

	// The repairs land through the replicator: a snapshot that rereads
	// every chunk, and one that starts the chain again after the lost
	// change set. The snapshots before them that named the damaged pack
	// stay unusable (packs have random names, so nothing stores that one
	// again): verify names that pack alone, and the newest state
	// restores.
	onlyThePack := func(vr verify.Report) bool {
		for _, p := range vr.Problems {
			if p.Key != flippedPack {
				return false
			}
		}
		return len(vr.Ranges) > 0 && vr.Ranges[len(vr.Ranges)-1].Last == r.Status().TXID && vr.Unrestorable == ""
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := r.Status().Targets[0]
		if st.Synced && st.Snapshot > base && st.Replicated >= r.Status().TXID {
			if vr, err := verify.Run(ctx, store, true, nil); err == nil && onlyThePack(vr) {
				break
			}
		}
		if time.Now().After(deadline) {
			vr, err := verify.Run(ctx, store, true, nil)
			t.Fatalf("the replica did not verify clean after the repairs: %v %+v; status %+v", err, vr, r.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	gaps := r.Status().Gaps
	if len(gaps) == 0 || gaps[0].First > lostSet.First {
		t.Fatalf("the lost change set %s is not recorded as a gap: %+v", lostSet.Key, gaps)
	}
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(0)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	if _, err := restore.ToFile(ctx, store, plan, out, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	if got, want := sha3(t, out), sha3(t, dbPath); got != want {
		t.Fatalf("the repaired replica restores to %s, the source is %s", got, want)
	}
}

func rewrite(t *testing.T, store objstore.Store, key string, change func([]byte) []byte) {
	t.Helper()
	rc, _, err := store.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(context.Background(), key, strings.NewReader(string(change(b))), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func sha3(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", "-readonly", path, ".sha3sum").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s .sha3sum: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestScrubCopiesFromAnotherTarget damages a change set on one of two
// targets: the scrub must copy it, checked, from the other, with no
// snapshot or gap needed. (Packs have random names, so no other target
// holds the same one: a damaged pack is repaired by a snapshot, as in
// scrubAndRepair.)
func TestScrubCopiesFromAnotherTarget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	stores := map[string]objstore.Store{}
	for _, name := range []string{"a", "b"} {
		s, err := filestore.New(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		stores[name] = s
	}
	r, err := capture.Open(ctx, capture.Options{DBPath: dbPath, SpoolDir: filepath.Join(dir, "spool"), Targets: stores, SyncInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()
	for i := range 60 {
		if _, err := db.Exec("INSERT INTO t (v) VALUES (randomblob(3000))"); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			if _, err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	a := stores["a"]
	l, err := layout.Read(ctx, a, layout.All, segment.Heads(a))
	if err != nil {
		t.Fatal(err)
	}
	set := l.Segments[len(l.Segments)-1].Key
	rewrite(t, a, set, func(b []byte) []byte { b[len(b)-10] ^= 1; return b })
	before := r.Status()

	rep, err := scrub.New(scrub.Options{Targets: stores, Repair: r, Interval: time.Millisecond, Share: 1}).Pass(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || rep.Repaired != 1 {
		t.Fatalf("damaged %v, repaired %d; want the change set, repaired", rep.Damaged, rep.Repaired)
	}
	vr, err := verify.Run(ctx, a, true, nil)
	if err != nil || !vr.OK() {
		t.Fatalf("target a after the copies: %v %+v", err, vr)
	}
	if after := r.Status(); len(after.Gaps) != 0 || after.Targets[0].Snapshot != before.Targets[0].Snapshot {
		t.Fatalf("copies needed no gap and no snapshot: before %+v, after %+v", before.Targets, after)
	}
}
