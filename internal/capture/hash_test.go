package capture

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// TestContentUnchanged runs one workload on two databases, one replicated
// by ferry with checkpoints as frequent as it allows, and compares their
// content hashes: replication adds no table, writes no row, and changes
// nothing SQLite can see.
func TestContentUnchanged(t *testing.T) {
	needCLI(t)
	n := 200
	if testing.Short() {
		n = 100
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := newDB(t, dirA, 4096, appSchema...)
	b := newDB(t, dirB, 4096, appSchema...)
	before := sha3(t, a)
	if got := sha3(t, b); got != before {
		t.Fatalf("the two databases differ before the test: %s, %s", before, got)
	}
	store := memstore.New()
	o := testOptions(dirA, a, map[string]objstore.Store{"mem://hash": store})
	o.CheckpointPages, o.TruncatePages = 10, 30
	o.SnapshotInterval = 200 * time.Millisecond
	r := startReplicator(t, o)
	r.sync(t)
	if got := sha3(t, a); got != before {
		t.Fatalf("starting ferry changed the content hash: %s, was %s", got, before)
	}
	wa := newWorkload(openApp(t, a), 42, n)
	wb := newWorkload(openApp(t, b), 42, n)
	for wa.k < n {
		if err := wa.step(); err != nil {
			t.Fatal(err)
		}
		if err := wb.step(); err != nil {
			t.Fatal(err)
		}
		if wa.k%100 == 0 {
			if ha, hb := sha3(t, a), sha3(t, b); ha != hb {
				t.Fatalf("commit %d: replicated database %s, the other %s", wa.k, ha, hb)
			}
		}
	}
	r.sync(t)
	r.stop()
	ha, hb := sha3(t, a), sha3(t, b)
	if ha != hb {
		t.Fatalf("after %d commits: replicated database %s, the other %s", n, ha, hb)
	}
	if out, err := cli(a, "PRAGMA integrity_check"); err != nil || out != "ok" {
		t.Fatalf("integrity_check of the replicated database: %q %v", out, err)
	}
	checkLatest(t, store, filepath.Dir(a), ha, n, 0)
}
