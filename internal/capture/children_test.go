package capture

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
)

// Environment of the child processes.
const (
	envDB      = "FERRY_CAPTURE_TEST_DB"
	envN       = "FERRY_CAPTURE_TEST_N"
	envSeed    = "FERRY_CAPTURE_TEST_SEED"
	envSamples = "FERRY_CAPTURE_TEST_SAMPLES"
	envCkpt    = "FERRY_CAPTURE_TEST_APP_CHECKPOINTS"
	envSpool   = "FERRY_CAPTURE_TEST_SPOOL"
	envStore   = "FERRY_CAPTURE_TEST_STORE"
	envResume  = "FERRY_CAPTURE_TEST_RESUME"
	envRestart = "FERRY_CAPTURE_TEST_RESTART"
)

func childFail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// writerChild is the application of the oracle test, in a process of its
// own: it makes N commits of the workload and, after each sampled one,
// prints the content hash the sqlite3 shell computes of the live database.
// With app checkpoints on, it also runs every kind of checkpoint SQLite
// has, now and then, as applications do.
func writerChild() {
	path := os.Getenv(envDB)
	n, _ := strconv.Atoi(os.Getenv(envN))
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	samples := map[int]bool{}
	for s := range strings.SplitSeq(os.Getenv(envSamples), ",") {
		if k, err := strconv.Atoi(s); err == nil {
			samples[k] = true
		}
	}
	ckpt := os.Getenv(envCkpt) != ""
	busy := 5000
	if ckpt {
		busy = 100
	}
	db, err := sql.Open("sqlite", sqliteURI(path, fmt.Sprintf("_pragma=busy_timeout(%d)", busy)))
	if err != nil {
		childFail("open: %v", err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	// NORMAL is the usual choice in WAL mode: commits skip the fsync,
	// which only checkpoints do.
	if _, err := db.Exec("PRAGMA synchronous=NORMAL"); err != nil {
		childFail("synchronous: %v", err)
	}
	if ckpt {
		if _, err := db.Exec("PRAGMA wal_autocheckpoint=100"); err != nil {
			childFail("autocheckpoint: %v", err)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	w := newWorkload(db, seed, n)
	if os.Getenv(envResume) != "" {
		if err := w.resume(); err != nil {
			childFail("resume: %v", err)
		}
	}
	modes := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
	for w.k < n {
		if err := w.step(); err != nil {
			childFail("commit %d: %v", w.k, err)
		}
		// An application pauses between transactions; under the race
		// detector on two cores, a writer that never does starves the
		// replicator of the CPU its snapshots need.
		time.Sleep(time.Millisecond)
		if ckpt && w.k%23 == 0 {
			mode := modes[(w.k/23)%len(modes)]
			var b, l, c int
			if err := db.QueryRow("PRAGMA wal_checkpoint("+mode+")").Scan(&b, &l, &c); err != nil {
				childFail("checkpoint %s: %v", mode, err)
			}
			fmt.Fprintf(out, "checkpoint %s %d %d %d\n", mode, b, l, c)
		}
		if samples[w.k] {
			h, err := cli(path, ".sha3sum")
			if err != nil {
				childFail("%v", err)
			}
			fmt.Fprintf(out, "hash %d %s\n", w.k, h)
			out.Flush()
		}
	}
	fmt.Fprintln(out, "done")
	out.Flush()
}

// replicatorChild is the replicator of the crash test: it replicates the
// database to a file target until it is killed, answering "sync" on stdin
// with the txid Sync returned. With envRestart set, its checkpoints take
// the writer lock only through RESTART checkpoints.
func replicatorChild() {
	store, err := filestore.New(os.Getenv(envStore))
	if err != nil {
		childFail("%v", err)
	}
	o := Options{
		DBPath:          os.Getenv(envDB),
		SpoolDir:        os.Getenv(envSpool),
		Targets:         map[string]objstore.Store{"file://crash": store},
		SyncInterval:    30 * time.Millisecond,
		PollInterval:    10 * time.Millisecond,
		CheckpointPages: 50,
		TruncatePages:   200,
		// Snapshots now and then, so that kills land inside them too.
		SnapshotInterval: 300 * time.Millisecond,
		Log:              testLog(),
	}
	if os.Getenv(envRestart) != "" {
		// Every checkpoint that would take the writer lock goes the
		// RESTART way, and from a short log, so that kills land in them.
		// The debug log tells the test how many completed.
		beginImmediateLoses.Store(true)
		o.CheckpointPages, o.TruncatePages = 10, 10
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := Open(context.Background(), o)
	if err != nil {
		childFail("open: %v", err)
	}
	go func() {
		if err := r.Run(context.Background()); err != nil {
			childFail("run: %v", err)
		}
	}()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() != "sync" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		txid, err := r.Sync(ctx)
		cancel()
		if err != nil {
			fmt.Printf("error %v %+v\n", err, r.Status())
			continue
		}
		fmt.Printf("synced %d\n", txid)
	}
	select {}
}
