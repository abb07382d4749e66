package main

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestSpoolDiskFullDuringAnOutage fills the spool's disk while the store
// is down and a writer commits rows of a few KB every few milliseconds.
// The application must not notice: no commit fails or takes longer than
// 2 s. The full disk must show in `ferry status` and /metrics, the lost
// point-in-time coverage as a gap; once space and the store return, a
// snapshot re-establishes the chain past the gap and the replica restores
// to the live database.
func TestSpoolDiskFullDuringAnOutage(t *testing.T) {
	needSQLite3(t)
	srv := testenv.StartPrivateS3(t)
	bucket := testenv.Bucket(t, srv.S3Server)
	bin := ferryBinary(t)
	dir := t.TempDir()
	spoolRoot := filepath.Join(dir, "spool")
	mountTmpfs(t, spoolRoot, "8m")

	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)")
	addr := freeAddr(t)
	url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)
	// The bound is far above the disk's size: the disk runs out first.
	cfg := writeConfig(t, dir, fmt.Sprintf(`addr: %s
spool: %s
dbs:
  - path: %s
    max-spool-bytes: 1GiB
    replicas:
      - url: %s
        access-key-id: %s
        secret-access-key: %s
`, addr, spoolRoot, dbPath, url, srv.AccessKey, srv.SecretKey))
	d := startDaemon(t, bin, "replicate", "-config", cfg)
	w := startBlobWriter(t, db, 5*time.Millisecond)
	syncDB(t, bin, dbPath, d)
	before := dbStatus(t, bin, dbPath)
	if len(before.Gaps) != 0 || before.Errors != 0 {
		t.Fatalf("status before the outage: %+v", before.Status)
	}
	snapBefore := before.Targets[0].Snapshot

	srv.Stop()
	down := time.Now()
	waitFor(t, 30*time.Second, "change sets to wait in the spool for the store", func() bool {
		w.check(t)
		return dbStatus(t, bin, dbPath).SpoolSegments > 0
	})
	// Fill what the spool left of its disk; removing the filler is how
	// space returns.
	filler := filepath.Join(spoolRoot, "filler")
	spooled := dbStatus(t, bin, dbPath).SpoolBytes
	wrote := fillDisk(t, filler)
	filled := time.Now()
	t.Logf("%s into the outage, with %d KiB of change sets spooled, a filler took the last %d KiB of the spool's disk",
		filled.Sub(down).Round(10*time.Millisecond), spooled>>10, wrote>>10)

	var full capture.Status
	waitFor(t, 30*time.Second, "status to show the full disk as a capture error and a gap", func() bool {
		w.check(t)
		full = dbStatus(t, bin, dbPath).Status
		return strings.Contains(full.LastError, "no space left on device") && full.Errors > 0 && len(full.Gaps) > 0
	})
	fullAt := time.Now()
	t.Logf("the full disk showed in status %s after the filler: last_error %q, errors %d, gaps %+v",
		fullAt.Sub(filled).Round(10*time.Millisecond), full.LastError, full.Errors, full.Gaps)
	if g := full.Gaps[len(full.Gaps)-1]; g.Target != url || g.First <= before.Targets[0].Replicated {
		t.Fatalf("the gap does not name the target or starts within what it held: %+v (held up to txid %d)", g, before.Targets[0].Replicated)
	}
	if n := captureErrorsMetric(t, get(t, "http://"+addr+"/metrics")); n <= 0 {
		t.Fatalf("/metrics counts %v capture errors with the spool's disk full", n)
	}
	if !d.logged("spool disk full") && !d.logged("spool full") {
		t.Fatalf("no log line for the full disk:\n%s", d.log())
	}

	// While the target waits for a snapshot the capture goes on counting
	// the application's transactions, and the application committing.
	waitFor(t, 30*time.Second, "the capture to keep up with 200 more commits", func() bool {
		w.check(t)
		return dbStatus(t, bin, dbPath).TXID >= full.TXID+200
	})
	select {
	case <-d.done:
		t.Fatalf("ferry replicate exited with the disk full: %v\n%s", d.err, d.log())
	default:
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	srv.Start()
	up := time.Now()
	var rec capture.Status
	waitFor(t, 60*time.Second, "a snapshot to carry the target past the gap", func() bool {
		w.check(t)
		rec = dbStatus(t, bin, dbPath).Status
		tgt := rec.Targets[0]
		if !tgt.Synced || tgt.Snapshot <= snapBefore {
			return false
		}
		for _, g := range rec.Gaps {
			if g.Open || g.Last >= tgt.Snapshot {
				return false
			}
		}
		return len(rec.Gaps) > 0
	})
	recovered := time.Since(up)
	snap := rec.Targets[0].Snapshot
	t.Logf("recovered %s after space and the store returned: snapshot_txid %d (was %d), gaps %+v",
		recovered.Round(10*time.Millisecond), snap, snapBefore, rec.Gaps)
	// The line is logged before the status shows the snapshot, but it
	// reaches this process through a pipe, which may lag behind.
	waitFor(t, 10*time.Second, fmt.Sprintf("the log line of the snapshot at txid %d", snap), func() bool {
		return loggedLine(d, `msg="snapshot stored"`, fmt.Sprintf(" txid=%d ", snap))
	})
	// One gap, from the first txid the target missed to the snapshot.
	if g := rec.Gaps; len(g) != 1 || g[0].First != full.Gaps[0].First || g[0].Last != snap-1 {
		t.Fatalf("after the snapshot at txid %d the gaps are %+v; want one from txid %d to %d\nend of the log:\n%s",
			snap, g, full.Gaps[0].First, snap-1, logTail(d, 30))
	}

	// With space back the capture has no more errors, and change sets
	// carry the next commits to the target without another snapshot.
	waitFor(t, 30*time.Second, "change sets to carry 100 commits past the snapshot", func() bool {
		w.check(t)
		st := dbStatus(t, bin, dbPath).Status
		if st.LastErrorTime.After(freed.Add(500*time.Millisecond)) || len(st.Gaps) != len(rec.Gaps) || st.Targets[0].Snapshot != snap {
			t.Fatalf("after space returned: last_error %q at %s (space returned at %s), errors %d (were %d), snapshot_txid %d (was %d), gaps %+v\n%s",
				st.LastError, st.LastErrorTime.Format(time.RFC3339Nano), freed.Format(time.RFC3339Nano), st.Errors, rec.Errors,
				st.Targets[0].Snapshot, snap, st.Gaps, logTail(d, 30))
		}
		return st.Targets[0].Replicated >= snap+100
	})
	w.stop(t)
	syncDB(t, bin, dbPath, d)
	restoreMatches(t, bin, url, dbPath, dir, srv)
	worst := time.Duration(w.worst.Load())
	t.Logf("%d commits, the slowest took %s", w.rows.Load(), worst.Round(time.Millisecond))
	if worst > 2*time.Second {
		t.Fatalf("a commit took %s while the spool's disk was full", worst)
	}
}

// loggedLine reports whether one line of d's log holds every one of subs.
func loggedLine(d *daemonProc, subs ...string) bool {
	for line := range strings.Lines(d.log()) {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			return true
		}
	}
	return false
}

// logTail returns the last n lines of d's log.
func logTail(d *daemonProc, n int) string {
	lines := strings.Split(strings.TrimSpace(d.log()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// mountTmpfs mounts a tmpfs of the given size at dir for the test.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("mounting a tmpfs (as root): %v: %s", err, strings.TrimSpace(string(out))))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fillDisk writes path until its file system has no room left and
// returns how many bytes it wrote.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// captureErrorsMetric sums ferry_db_capture_errors_total over its series.
func captureErrorsMetric(t *testing.T, metrics string) float64 {
	t.Helper()
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(metrics))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ferry_db_capture_errors_total") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		t.Fatalf("/metrics has no ferry_db_capture_errors_total:\n%s", metrics)
	}
	return sum
}

// blobWriter inserts a row of 4000 random bytes every interval until
// stopped, noting the slowest commit; any failed commit fails the test.
type blobWriter struct {
	rows  atomic.Int64
	worst atomic.Int64 // nanoseconds
	quit  chan struct{}
	done  chan error
}

func startBlobWriter(t *testing.T, db *sql.DB, every time.Duration) *blobWriter {
	w := &blobWriter{quit: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-w.quit:
				w.done <- nil
				return
			case <-tick.C:
			}
			start := time.Now()
			if _, err := db.Exec("INSERT INTO blobs (body) VALUES (randomblob(4000))"); err != nil {
				w.done <- err
				return
			}
			if took := int64(time.Since(start)); took > w.worst.Load() {
				w.worst.Store(took)
			}
			w.rows.Add(1)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.quit:
		default:
			close(w.quit)
		}
	})
	return w
}

// check fails the test at once if a commit failed.
func (w *blobWriter) check(t *testing.T) {
	t.Helper()
	select {
	case err := <-w.done:
		t.Fatalf("the application's commit failed: %v", err)
	default:
	}
}

func (w *blobWriter) stop(t *testing.T) {
	t.Helper()
	close(w.quit)
	if err := <-w.done; err != nil {
		t.Fatalf("the application's commit failed: %v", err)
	}
}
