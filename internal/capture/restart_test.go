package capture

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
)

// TestRestartCheckpointKeepsTheLogShort has another process commit as
// fast as it can while every BEGIN IMMEDIATE of ferry's loses the writer
// lock, as most do against such a writer: the log must still restart,
// through ferry's RESTART checkpoints and the reader handed over while
// they wait, and every commit must still get a txid of its own and
// restore exactly. Without them the log grows by 100-200 MiB a second
// here.
func TestRestartCheckpointKeepsTheLogShort(t *testing.T) {
	needCLI(t)
	beginImmediateLoses.Store(true)
	defer beginImmediateLoses.Store(false)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://restart": store})
	o.CheckpointPages, o.TruncatePages = 200, 400 // RESTART from 3,200 frames, 12.5 MiB
	o.PollInterval, o.SyncInterval = 50*time.Millisecond, time.Second
	r := startReplicator(t, o)
	base := r.sync(t)

	stop := make(chan struct{})
	var largest int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if fi, err := os.Stat(db + "-wal"); err == nil {
				largest = max(largest, fi.Size())
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=inserter", envDB+"="+db, envFor+"=4s")
	out, err := cmd.Output()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("inserter: %v: %s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("inserter said %q", out)
	}
	const limit = 64 << 20
	t.Logf("%d commits in 4 s; the log grew to %.1f MiB at most (limit %.0f MiB)", n, float64(largest)/(1<<20), float64(limit)/(1<<20))
	if largest > limit {
		t.Fatalf("with BEGIN IMMEDIATE always losing, the log grew to %d bytes, more than %d", largest, limit)
	}
	want := base + uint64(n)
	for end := time.Now().Add(30 * time.Second); r.Status().TXID < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d commits: ferry captured up to txid %d, want %d, 30 s after the writer stopped", n, r.Status().TXID, want)
		}
	}
	if got := r.Status().TXID; got != want {
		t.Fatalf("%d commits became txids %d..%d, want up to %d", n, base+1, got, want)
	}
	last := r.sync(t)
	restored, res := restoreAt(t, store, 0, dir)
	defer os.Remove(restored)
	if got, live := sha3(t, restored), sha3(t, db); got != live || res.TXID != last {
		t.Fatalf("latest restore is txid %d with hash %s; want txid %d, hash %s", res.TXID, got, last, live)
	}
}

// TestSnapshotsAcrossLogRestarts takes snapshots back to back while the
// log restarts many times a second, most restarts through a RESTART
// checkpoint of ferry's. A checkpoint that copies the whole log leaves
// ferry's next read transaction on SQLite's slot 0, from which the log
// restarts at the application's next commit: a snapshot begun then reads
// the pages whose frames that commit overwrote as the read transaction
// shows them, from the database file. Every snapshot must be stored at
// its first attempt, and those read so restore what the change sets
// restore for their txids from the first snapshot on.
func TestSnapshotsAcrossLogRestarts(t *testing.T) {
	needCLI(t)
	beginImmediateLoses.Store(true)
	defer beginImmediateLoses.Store(false)
	dir := t.TempDir()
	const rows = 4000
	db := newDB(t, dir, 4096, "CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB)",
		fmt.Sprintf("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d) INSERT INTO kv SELECT i, randomblob(200) FROM n", rows))
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://restarts": store})
	o.CheckpointPages, o.TruncatePages = 10, 10
	o.SnapshotInterval = 10 * time.Millisecond
	var logged lockedBuffer
	o.Log = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := startReplicator(t, o)
	r.sync(t)
	// Updates of random rows as fast as one connection goes, until three
	// snapshots met a restart of the log: the frames of a generation
	// then hold pages all over the table, the early ones too.
	app := openApp(t, db, "PRAGMA synchronous=NORMAL")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 6))
	const across = `msg="the log restarted under the snapshot`
	for end := time.Now().Add(60 * time.Second); strings.Count(logged.String(), across) < 3 && time.Now().Before(end); {
		for range 100 {
			if _, err := app.Exec("UPDATE kv SET v = randomblob(200) WHERE id = ?", 1+rng.IntN(rows)); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := r.sync(t)
	var stored int
	var failed []string
	var crossed []uint64 // txids of the snapshots that met a restart
	for line := range strings.Lines(logged.String()) {
		switch {
		case strings.Contains(line, `msg="snapshot stored"`):
			stored++
		case strings.Contains(line, `msg="snapshot failed`):
			failed = append(failed, line)
		case strings.Contains(line, across):
			crossed = append(crossed, logTXID(t, line))
		}
	}
	t.Logf("%d snapshots stored, %d of them across a restart of the log; %d RESTART checkpoints completed",
		stored, len(crossed), restartsDone(logged.String()))
	if len(failed) > 0 {
		t.Fatalf("%d snapshots failed, the first: %s", len(failed), failed[0])
	}
	if len(crossed) < 3 {
		t.Fatalf("in 60 s only %d snapshots met a restart of the log", len(crossed))
	}
	for _, txid := range crossed {
		out, res := restoreAt(t, store, txid, dir)
		chained := restoreFromFirstSnapshot(t, store, txid, dir)
		got, want := sha3(t, out), sha3(t, chained)
		os.Remove(out)
		os.Remove(chained)
		if res.TXID != txid || got != want {
			t.Fatalf("the snapshot at txid %d restores txid %d with hash %s; the change sets restore hash %s", txid, res.TXID, got, want)
		}
	}
	out, res := restoreAt(t, store, 0, dir)
	defer os.Remove(out)
	if got, live := sha3(t, out), sha3(t, db); got != live || res.TXID != last {
		t.Fatalf("latest restore is txid %d with hash %s; want txid %d, hash %s", res.TXID, got, last, live)
	}
}

// restoreFromFirstSnapshot restores store to txid from its first snapshot
// and the change sets after it, whatever snapshots came later.
func restoreFromFirstSnapshot(t *testing.T, store objstore.Store, txid uint64, dir string) string {
	t.Helper()
	ctx := context.Background()
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	cat.Snapshots = cat.Snapshots[:1]
	plan, err := cat.PlanTXID(txid)
	if err != nil {
		t.Fatalf("txid %d from the first snapshot: %v", txid, err)
	}
	out := filepath.Join(dir, fmt.Sprintf("chained-%d.db", txid))
	if _, err := restore.ToFile(ctx, store, plan, out, restore.Options{}); err != nil {
		t.Fatalf("restore txid %d from the first snapshot: %v", txid, err)
	}
	return out
}

// logTXID is the txid attribute of a line of the text log.
func logTXID(t *testing.T, line string) uint64 {
	t.Helper()
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, "txid="); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("log line %q has no txid", line)
	return 0
}

// lockedBuffer is a bytes.Buffer that a logger may write to while the
// test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
