package gc_test

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/gc"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestHistoryLevelsOffAndRetainedTxidsRestore replicates a database that
// is written without pause, snapshotted every second, with a retention of
// 3 s and a sweep every half second, for many retention periods. The
// objects and bytes in the replica must level off instead of growing;
// every txid committed inside retention must restore exactly (sqlite3's
// .sha3sum against the source's, recorded when the txid was durable); a
// txid before it must be refused, naming the oldest one that restores.
func TestHistoryLevelsOffAndRetainedTxidsRestore(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
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
	store, err := filestore.New(filepath.Join(dir, "replica"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := capture.Open(ctx, capture.Options{
		DBPath: dbPath, SpoolDir: filepath.Join(dir, "spool"),
		Targets:      map[string]objstore.Store{"file://replica": store},
		SyncInterval: 100 * time.Millisecond, SnapshotInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()

	const retention = 3 * time.Second
	opts := gc.Options{Retention: retention, Grace: 2500 * time.Millisecond, ReprieveWindow: 200 * time.Millisecond}
	type sample struct {
		txid uint64
		at   time.Time
		hash string
	}
	var samples []sample
	type size struct{ objects, bytes int64 }
	var sizes []size
	start := time.Now()
	lastSweep := start
	for i := 0; time.Since(start) < 18*time.Second; i++ {
		// Inserts and updates over 200 rows: the database keeps a steady
		// size while every snapshot differs from the one before.
		if _, err := db.Exec("INSERT OR REPLACE INTO t (id, v) VALUES (?, randomblob(2000))", i%200); err != nil {
			t.Fatal(err)
		}
		if i%50 != 0 {
			continue
		}
		txid, err := r.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample{txid, time.Now(), sha3(t, dbPath)})
		if time.Since(lastSweep) >= retention/6 {
			lastSweep = time.Now()
			if _, err := gc.Run(ctx, store, opts); err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, replicaSize(t, store))
		}
	}
	rep, err := gc.Run(ctx, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	swept := time.Now()

	// Leveling: the replica in the last third is no bigger than in the
	// middle third, give or take a snapshot's worth.
	third := len(sizes) / 3
	if third < 3 {
		t.Fatalf("only %d sweeps", len(sizes))
	}
	peak := func(s []size) size {
		var p size
		for _, x := range s {
			p.objects, p.bytes = max(p.objects, x.objects), max(p.bytes, x.bytes)
		}
		return p
	}
	mid, last := peak(sizes[third:2*third]), peak(sizes[2*third:])
	t.Logf("replica peak: middle third %d objects / %d bytes, last third %d / %d; %d sweeps, %d samples", mid.objects, mid.bytes, last.objects, last.bytes, len(sizes), len(samples))
	if float64(last.objects) > 1.5*float64(mid.objects) || float64(last.bytes) > 1.5*float64(mid.bytes) {
		t.Fatalf("the replica kept growing: %v", sizes)
	}

	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	oldest := rep.Oldest
	restored, refused := 0, 0
	for _, s := range samples {
		plan, err := cat.PlanTXID(s.txid)
		inside := !s.at.Before(swept.Add(-retention))
		if err != nil {
			if inside {
				t.Fatalf("txid %d, committed %s before the last sweep, inside retention: %v", s.txid, swept.Sub(s.at).Round(time.Millisecond), err)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(oldest)) {
				t.Errorf("txid %d past retention refused without naming the oldest restorable txid %d: %v", s.txid, oldest, err)
			}
			refused++
			continue
		}
		out := filepath.Join(t.TempDir(), "r.db")
		if _, err := restore.ToFile(ctx, store, plan, out, restore.Options{}); err != nil {
			t.Fatalf("restore txid %d: %v", s.txid, err)
		}
		if got := sha3(t, out); got != s.hash {
			t.Fatalf("txid %d restores to %s, the source was %s", s.txid, got, s.hash)
		}
		restored++
	}
	if refused == 0 || restored == 0 {
		t.Fatalf("%d txids restored, %d refused: the test saw no retention at work", restored, refused)
	}
	t.Logf("%d txids restored exactly, %d past retention refused; oldest snapshot kept: txid %d", restored, refused, oldest)
}

func replicaSize(t testing.TB, store objstore.Store) (s struct{ objects, bytes int64 }) {
	t.Helper()
	l, err := layout.Read(context.Background(), store, layout.All, segment.Heads(store))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range l.Snapshots {
		s.objects, s.bytes = s.objects+1, s.bytes+x.Size
	}
	for _, x := range l.Segments {
		s.objects, s.bytes = s.objects+1, s.bytes+x.Size
	}
	for _, x := range l.Chunks {
		s.objects, s.bytes = s.objects+1, s.bytes+x.Size
	}
	return s
}

func sha3(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", "-readonly", path, ".sha3sum").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s .sha3sum: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}
