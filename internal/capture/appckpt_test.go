package capture

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// TestAppCheckpoints has the application run every kind of checkpoint
// SQLite has (PASSIVE, FULL, RESTART, TRUNCATE, and automatic ones every
// 100 pages) while ferry replicates, then, with ferry stopped, write on,
// checkpoint with TRUNCATE and close the database, so that the log ferry
// resumes from is gone. Every restore must still be exact: the log
// generations SQLite starts while ferry protects the log continue the
// chain, and the break while ferry was down is answered with a snapshot.
//
// Ferry runs without its checkpoint hold here, as where none could be
// had, so that the application's checkpoints run while it commits.
func TestAppCheckpoints(t *testing.T) {
	needCLI(t)
	checkpointHoldOff.Store(true)
	defer checkpointHoldOff.Store(false)
	n1, n2, n3, samples := 500, 530, 700, 12
	if testing.Short() {
		n1, n2, n3, samples = 200, 230, 300, 8
	}
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	store := memstore.New()
	o := oracleOptions(dir, db, map[string]objstore.Store{"mem://ckpt": store})
	r := startReplicator(t, o)
	base := r.sync(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	// Phase 1: the application checkpoints while ferry runs.
	completed := map[string]int{}
	w1 := writerRun{db: db, n: n1, seed: seed, samples: pickSamples(rng, 0, n1, samples, n1/2), appCkpts: true, completed: completed}
	hashes := w1.run(t)
	if completed["PASSIVE"] == 0 {
		t.Fatalf("none of the application's PASSIVE checkpoints completed while ferry ran (completed: %v)", completed)
	}
	r.sync(t)
	r.stop()

	// Phase 2: ferry is down; the application writes, truncates the log
	// and closes, which deletes the log.
	app := openApp(t, db)
	w := newWorkload(app, seed+1, n3)
	if err := w.resume(); err != nil {
		t.Fatal(err)
	}
	for w.k < n2 {
		if w.k == n1+(n2-n1)*3/4 {
			var b, l, c int
			if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&b, &l, &c); err != nil || b != 0 {
				t.Fatalf("TRUNCATE checkpoint with ferry down: busy %d, %v", b, err)
			}
		}
		if err := w.step(); err != nil {
			t.Fatal(err)
		}
	}
	app.Close()
	hashes[n2] = sha3(t, db)

	// Phase 3: ferry resumes, finds the log gone, and carries on from a
	// snapshot; the application checkpoints again.
	r = startReplicator(t, o)
	breakTXID := r.sync(t)
	w3 := writerRun{db: db, n: n3, seed: seed + 2, samples: pickSamples(rng, n2, n3, samples/2, 0), resume: true, appCkpts: true}
	for k, h := range w3.run(t) {
		hashes[k] = h
	}
	last := r.sync(t)
	// The one gap is the break: its txid folds in commits ferry never read.
	if st := r.Status(); len(st.Gaps) != 1 || st.Gaps[0].First != breakTXID || st.Gaps[0].Last != breakTXID {
		t.Errorf("gaps: %+v, want the break at txid %d alone", st.Gaps, breakTXID)
	}
	checkLatest(t, store, dir, hashes[n3], n3, last)

	// The break's snapshot is the database as ferry found it.
	out, _ := restoreAt(t, store, breakTXID, dir)
	if k := marker(t, out); k != n2 {
		t.Fatalf("txid %d after the break restores commit %d, want %d", breakTXID, k, n2)
	}
	if got := sha3(t, out); got != hashes[n2] {
		t.Fatalf("txid %d after the break: hash %s, want %s", breakTXID, got, hashes[n2])
	}
	ks := append(append([]int{}, w1.samples...), w3.samples...)
	checkSamples(t, store, dir, base, last, hashes, ks)
	t.Logf("txids %d..%d; the break took txid %d; %d snapshots", base, last, breakTXID, snapshotCount(t, store))
}
