package capture

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// snapshotLog records the snapshots a Replicator reports storing.
type snapshotLog struct {
	mu    sync.Mutex
	stats []map[string]int64
}

func (l *snapshotLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *snapshotLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *snapshotLog) WithGroup(string) slog.Handler            { return l }
func (l *snapshotLog) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "snapshot stored" {
		return nil
	}
	m := map[string]int64{}
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Value.Kind() {
		case slog.KindInt64:
			m[a.Key] = a.Value.Int64()
		case slog.KindUint64:
			m[a.Key] = int64(a.Value.Uint64())
		}
		return true
	})
	l.mu.Lock()
	l.stats = append(l.stats, m)
	l.mu.Unlock()
	return nil
}

func (l *snapshotLog) last() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.stats) == 0 {
		return nil
	}
	return l.stats[len(l.stats)-1]
}

// TestIncrementalSnapshot checks that a periodic snapshot after a small
// change rereads only the chunks the log says changed, and that one after
// a break rereads everything.
func TestIncrementalSnapshot(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE app_meta(k INTEGER)", "INSERT INTO app_meta VALUES(0)",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<3000) INSERT INTO t SELECT x, zeroblob(1000) FROM c")
	store := &faultyStore{Store: memstore.New()}
	logs := &snapshotLog{}
	o := testOptions(dir, db, map[string]objstore.Store{"mem://inc": store})
	o.Log = slog.New(logs)
	o.SnapshotInterval = 100 * time.Millisecond
	r := startReplicator(t, o)
	r.sync(t)
	first := logs.last()
	if first == nil || first["reread"] != first["chunks"] || first["chunks"] < 40 {
		t.Fatalf("first snapshot: %v", first)
	}
	app := openApp(t, db)
	if _, err := app.Exec("UPDATE t SET v=randomblob(1000) WHERE id=1500"); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec("UPDATE app_meta SET k=1"); err != nil {
		t.Fatal(err)
	}
	want := sha3(t, db)
	last := r.sync(t)
	deadline := time.Now().Add(10 * time.Second)
	for logs.last()["txid"] != int64(last) {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at txid %d: %v", last, logs.last())
		}
		time.Sleep(20 * time.Millisecond)
	}
	inc := logs.last()
	// Row 1500's page, and the pages of app_meta and the first page
	// (whose header counts changes): a few chunks, not all of them.
	if inc["reread"] > 4 || inc["uploaded"] > 4 {
		t.Fatalf("a snapshot after a two-row change reread %d and uploaded %d of %d chunks", inc["reread"], inc["uploaded"], inc["chunks"])
	}
	checkLatest(t, store, dir, want, 1, last)
	t.Logf("full snapshot %v; incremental %v", first, inc)
}
