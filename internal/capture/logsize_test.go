package capture

import (
	"os"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// TestLogStaysShortUnderSteadyWrites writes without a pause, as fast as
// one connection can, while ferry replicates. Ferry's read transaction
// keeps SQLite from restarting the log by itself, so unless ferry's own
// checkpoints finish and let it restart, the log grows for as long as the
// writes go on (by about 100 MiB a second here, over 700 MiB in this
// test). It must stay bounded: it may grow by what one fast writer appends
// between two of ferry's attempts, each a tenth of a second or more apart
// on a busy machine, not more.
func TestLogStaysShortUnderSteadyWrites(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://steady": store})
	o.CheckpointPages, o.TruncatePages = 200, 800
	r := startReplicator(t, o)
	r.sync(t)
	app := openApp(t, db, "PRAGMA synchronous=NORMAL")
	var largest int64
	n := 0
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); n++ {
		if _, err := app.Exec("INSERT INTO t(v) VALUES(printf('%0400d', ?))", n); err != nil {
			t.Fatal(err)
		}
		if n%500 == 0 {
			if fi, err := os.Stat(db + "-wal"); err == nil {
				largest = max(largest, fi.Size())
			}
		}
	}
	last := r.sync(t)
	const limit = 128 << 20
	t.Logf("%d commits, txid %d; the log grew to %.1f MiB at most (limit %.1f MiB)", n, last, float64(largest)/(1<<20), float64(limit)/(1<<20))
	if largest > limit {
		t.Fatalf("under steady writes the log grew to %d bytes, more than %d", largest, limit)
	}
	out, res := restoreAt(t, store, 0, dir)
	defer os.Remove(out)
	if got, want := sha3(t, out), sha3(t, db); got != want || res.TXID != last {
		t.Fatalf("latest restore is txid %d with hash %s; want txid %d, hash %s", res.TXID, got, last, want)
	}
}
