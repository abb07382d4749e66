package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
)

// BenchmarkRestoreSideBySide restores one database, half random bytes and
// half text, from versitygw with ferry and, when it is on PATH, with
// Litestream, in alternating rounds (FERRY_BENCH_ROUNDS, 3 by default),
// each restore checked against the source with sqlite3's .sha3sum. The
// size is FERRY_BENCH_DB_BYTES (64 MiB by default; the figures in
// BENCHMARKS.md are for 1GiB).
//
// It also reports what ferry's first snapshot of that database cost: its
// rate, requests and bytes stored, and the requests a restore makes.
func BenchmarkRestoreSideBySide(b *testing.B) {
	srv := s3Server(b)
	size := dbBytes(b)
	rounds := 3
	if s := os.Getenv("FERRY_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("FERRY_BENCH_ROUNDS=%q: want a count of at least 1", s)
		}
		rounds = n
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "mixed.db")
	buildMixed(b, src, size)
	want := sha3sum(b, src)
	b.Logf("built %d MiB, half random and half text", size>>20)

	// ferry: the first snapshot, timed from the replicator's start.
	debug.FreeOSMemory()
	settle()
	start := time.Now()
	r := runReplica(b, srv, src, capture.Options{})
	r.waitSnapshot(b)
	snapDur := time.Since(start)
	snapUse := since(nil, r.store.counts(), "chunks", "packs", "snapshots")
	if err := r.stop(); err != nil {
		b.Fatal(err)
	}
	store := r.store

	// Litestream, on a copy of the same file.
	var ls *litestream
	lsConf, lsWant := "", ""
	if bin := litestreamPath(b); bin != "" {
		lsDB := filepath.Join(dir, "litestream", "mixed.db")
		if err := os.MkdirAll(filepath.Dir(lsDB), 0o755); err != nil {
			b.Fatal(err)
		}
		copyFile(b, src, lsDB)
		ls = startLitestream(b, bin, srv, lsDB, srv.Endpoint)
		lsConf = ls.cmd.Args[len(ls.cmd.Args)-1] // replicate -config <file>
		waitStable(b, bucketStore(b, srv, ls.bucket))
		ls.stop()
		// Litestream adds tables of its own to the database it
		// replicates: its restore is held to that file.
		lsWant = sha3sum(b, lsDB)
	}

	var ferryDur, lsDur, checkDur []time.Duration
	var gets int64
	ctx := context.Background()
	for round := range rounds {
		out := filepath.Join(dir, fmt.Sprintf("ferry-%d.db", round))
		before := store.counts()
		settle()
		start := time.Now()
		restoreNewest(b, store, out, restore.Options{})
		ferryDur = append(ferryDur, time.Since(start))
		gets = since(before, store.counts()).calls
		// Where the time goes: SQLite's check of the result alone.
		start = time.Now()
		if err := restore.IntegrityCheck(ctx, out); err != nil {
			b.Fatal(err)
		}
		checkDur = append(checkDur, time.Since(start))
		checkRestored(b, "ferry", out, want)
		os.Remove(out)

		if ls != nil {
			out := filepath.Join(dir, fmt.Sprintf("litestream-%d.db", round))
			settle()
			start := time.Now()
			cmd := exec.Command(ls.cmd.Path, "restore", "-config", lsConf, "-o", out, filepath.Join(dir, "litestream", "mixed.db"))
			cmd.Env = append(withoutAWS(os.Environ()), "AWS_ACCESS_KEY_ID="+srv.AccessKey,
				"AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_EC2_METADATA_DISABLED=true")
			if msg, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("litestream restore: %v: %s", err, msg)
			}
			lsDur = append(lsDur, time.Since(start))
			checkRestored(b, "litestream", out, lsWant)
			os.Remove(out)
		}
	}
	mb := float64(size) / 1e6
	best := func(ds []time.Duration) time.Duration {
		m := ds[0]
		for _, d := range ds {
			m = min(m, d)
		}
		return m
	}
	b.ReportMetric(mb/best(ferryDur).Seconds(), "ferry-restore-MB/s")
	b.ReportMetric(float64(gets), "ferry-restore-requests")
	b.ReportMetric(mb/snapDur.Seconds(), "ferry-first-snapshot-MB/s")
	b.ReportMetric(float64(snapUse.calls), "ferry-snapshot-requests")
	b.ReportMetric(100*float64(snapUse.putBytes)/float64(size), "ferry-snapshot-bytes-%")
	b.ReportMetric(best(checkDur).Seconds(), "integrity-check-s")
	b.Logf("ferry restores: %v, of which SQLite's integrity check about %v; first snapshot %s", ferryDur, checkDur, snapDur.Round(time.Millisecond))
	if ls != nil {
		b.ReportMetric(mb/best(lsDur).Seconds(), "litestream-restore-MB/s")
		b.ReportMetric(best(lsDur).Seconds()/best(ferryDur).Seconds(), "ferry/litestream-speed")
		b.Logf("litestream restores: %v", lsDur)
	} else {
		b.Log("litestream is not on PATH: no side-by-side figures")
	}
	b.ReportMetric(0, "ns/op")
}

// settle writes out what the kernel holds dirty, so that the step timed
// next does not pay for the writeback of gigabytes that the steps before
// it left behind (the source built, the other tool's replica and
// restore): each tool's figure then counts only its own writes.
func settle() { syscall.Sync() }

// restoreNewest restores the newest state store holds into out, as
// `ferry restore` does.
func restoreNewest(b *testing.B, store objstore.Store, out string, o restore.Options) {
	b.Helper()
	ctx := context.Background()
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		b.Fatal(err)
	}
	plan, err := cat.PlanTXID(0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := restore.ToFile(ctx, store, plan, out, o); err != nil {
		b.Fatal(err)
	}
}

// buildMixed creates a database of about size bytes in WAL mode: 4 KiB
// pages, one wide row per page, every other row random bytes and the
// others text (hex digits, which compress about 2:1).
func buildMixed(b *testing.B, path string, size int64) {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	for _, q := range []string{"PRAGMA page_size=4096", "PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"} {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	rows := size / 4096
	for done := int64(0); done < rows; {
		n := min(rows-done, 10000)
		if _, err := db.Exec(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < ?)
			INSERT INTO t(v) SELECT CASE WHEN x % 2 = 0 THEN randomblob(?) ELSE hex(randomblob(? / 2)) END FROM c`, n, wideRow, wideRow); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode=WAL").Scan(&mode); err != nil || mode != "wal" {
		b.Fatalf("switch to WAL: %q %v", mode, err)
	}
}

// waitStable waits until the objects in store stop changing for 5 s: an
// outside replicator has stored everything it had to.
func waitStable(b *testing.B, store objstore.Store) {
	b.Helper()
	var last [2]int64
	since := time.Now()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Since(since) < 5*time.Second {
		if time.Now().After(deadline) {
			b.Fatal("litestream was still storing objects after 10 minutes")
		}
		var now [2]int64
		for info, err := range store.List(context.Background(), "") {
			if err != nil {
				b.Fatal(err)
			}
			now[0]++
			now[1] += info.Size
		}
		if now != last || now[0] == 0 {
			last, since = now, time.Now()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func sha3sum(b *testing.B, path string) string {
	b.Helper()
	out, err := exec.Command("sqlite3", "-readonly", path, ".sha3sum").CombinedOutput()
	if err != nil {
		b.Fatalf("sqlite3 %s .sha3sum: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// checkRestored fails the benchmark unless the database at path passes
// PRAGMA integrity_check and has the content hash want.
func checkRestored(b *testing.B, who, path, want string) {
	b.Helper()
	out, err := exec.Command("sqlite3", "-readonly", path, "PRAGMA integrity_check").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		b.Fatalf("%s's restore fails the integrity check: %v: %s", who, err, out)
	}
	if got := sha3sum(b, path); got != want {
		b.Fatalf("%s's restore has content %s, the source %s", who, got, want)
	}
}

func copyFile(b *testing.B, from, to string) {
	b.Helper()
	in, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}
