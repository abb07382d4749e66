package capture

import (
	"bufio"
	"context"
	"database/sql"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/wal"
)

// appCheckpoint runs the application's PASSIVE checkpoint and reports
// whether SQLite found the checkpoint lock taken.
func appCheckpoint(t *testing.T, db *sql.DB) (busy bool) {
	t.Helper()
	var b, log, moved int64
	if err := db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&b, &log, &moved); err != nil {
		t.Fatalf("application checkpoint: %v", err)
	}
	return b != 0
}

// logged opens an application connection to a new database and commits
// a few rows, leaving them in the log.
func logged(t *testing.T) (string, *sql.DB) {
	t.Helper()
	path := newDB(t, t.TempDir(), 4096, "CREATE TABLE t(v TEXT)")
	app := openApp(t, path, "PRAGMA wal_autocheckpoint=0")
	for range 20 {
		if _, err := app.Exec("INSERT INTO t VALUES ('row')"); err != nil {
			t.Fatal(err)
		}
	}
	return path, app
}

// TestCheckpointHoldKeepsOtherCheckpointsOut: while held, a checkpoint of
// any other connection finds the lock taken (those of this process too:
// the lock is on the open file description); around ferry's own
// checkpoint, and once let go, they run again.
func TestCheckpointHoldKeepsOtherCheckpointsOut(t *testing.T) {
	path, app := logged(t)
	h := openCheckpointHold(path, false)
	if h == nil {
		t.Fatal("no checkpoint hold on a database in WAL mode")
	}
	defer h.close()
	if err := h.set(true); err != nil {
		t.Fatal(err)
	}
	if !h.isHeld() {
		t.Fatal("lock not taken on a settled wal-index")
	}
	if !appCheckpoint(t, app) {
		t.Fatal("the application's checkpoint ran while the lock was held")
	}
	// What ferry's own checkpoints do: let go for their time.
	var inside bool
	if err := h.release(func() error { inside = appCheckpoint(t, app); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside {
		t.Fatal("a checkpoint found the lock taken while it was let go")
	}
	if !h.isHeld() || !appCheckpoint(t, app) {
		t.Fatal("the lock was not taken again after the checkpoint")
	}
	if err := h.set(false); err != nil {
		t.Fatal(err)
	}
	if appCheckpoint(t, app) {
		t.Fatal("the application's checkpoint found the lock taken after it was let go")
	}
}

// TestCheckpointHoldLetsRecoveryIn: a wal-index header left unsettled (a
// writer died while updating it) must be recovered by the next
// connection, which needs the checkpoint lock: the hold is not taken
// then, and a held one is let go at the next recheck.
func TestCheckpointHoldLetsRecoveryIn(t *testing.T) {
	path, _ := logged(t) // the application's connection stays open till the end
	h := openCheckpointHold(path, false)
	if h == nil {
		t.Fatal("no checkpoint hold")
	}
	defer h.close()
	if err := h.set(true); err != nil || !h.isHeld() {
		t.Fatalf("hold not taken: %v", err)
	}

	// Tear the header: the second copy, which SQLite writes first, holds
	// a frame count the first does not. Through the hold's descriptor: a
	// descriptor of the test's own would drop the process's locks on the
	// file when closed.
	fd := h.shm.fd
	hdr := make([]byte, wal.IndexHeaderSize)
	if _, err := unix.Pread(fd, hdr, 0); err != nil {
		t.Fatal(err)
	}
	if !wal.IndexHeaderSettled(hdr) {
		t.Fatal("the header SQLite wrote does not read as settled")
	}
	hdr[48+16]++
	if _, err := unix.Pwrite(fd, hdr[48:], 48); err != nil {
		t.Fatal(err)
	}
	if err := h.recheck(); err != nil {
		t.Fatal(err)
	}
	if h.isHeld() {
		t.Fatal("hold kept over an unsettled wal-index header")
	}
	if err := h.set(true); err != nil || h.isHeld() {
		t.Fatalf("hold taken over an unsettled wal-index header (err %v)", err)
	}

	// A new connection recovers the index and reads every row.
	other := openApp(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var n int
	if err := other.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 20 {
		t.Fatalf("read after the torn header: %d rows, %v", n, err)
	}
	if _, err := unix.Pread(fd, hdr, 0); err != nil || !wal.IndexHeaderSettled(hdr) {
		t.Fatalf("the header is not settled after recovery (%v)", err)
	}
	if err := h.set(true); err != nil || !h.isHeld() {
		t.Fatalf("hold not taken again once the header settled: %v", err)
	}
}

// TestCheckpointHoldKeepsTheProcesssLocks: ending a hold must not close
// the -shm file, which would drop every POSIX lock of the process on it
// (here the read mark of an open read transaction); the next hold of the
// file takes the same descriptor up again, and a second hold at once gets
// none.
func TestCheckpointHoldKeepsTheProcesssLocks(t *testing.T) {
	path, app := logged(t)
	tx, err := app.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	h := openCheckpointHold(path, false)
	if h == nil {
		t.Fatal("no checkpoint hold")
	}
	fd := h.shm.fd
	// Whether any read-mark byte is locked, asked through the hold's
	// descriptor, which stays open: closing one of the test's own would
	// drop the locks it looks for.
	readMarkHeld := func() bool {
		for b := int64(wal.CheckpointLockByte + 2); b < wal.CheckpointLockByte+7; b++ {
			lk := unix.Flock_t{Type: unix.F_WRLCK, Start: b, Len: 1}
			if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
				t.Fatalf("ask for the locks of the -shm file: %v", err)
			}
			if lk.Type != unix.F_UNLCK {
				return true
			}
		}
		return false
	}
	if !readMarkHeld() {
		t.Fatal("the read transaction holds no read-mark lock")
	}
	if second := openCheckpointHold(path, false); second != nil {
		t.Fatal("a second hold of the same file at once")
	}
	if err := h.set(true); err != nil {
		t.Fatal(err)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	if !readMarkHeld() {
		t.Fatal("ending the hold dropped the read transaction's lock")
	}
	again := openCheckpointHold(path, false)
	if again == nil || again.shm.fd != fd {
		t.Fatal("the next hold did not take the same descriptor up again")
	}
	again.close()
}

// TestReplicatorHoldsCheckpointsWhileCommitsFlow: a checkpoint the
// application tries between its commits finds the lock taken; once it
// stops committing, the replicator lets the lock go within holdIdle and
// a few polls.
func TestReplicatorHoldsCheckpointsWhileCommitsFlow(t *testing.T) {
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(v BLOB)")
	o := testOptions(dir, db, map[string]objstore.Store{"mem://hold": memstore.New()})
	o.CheckpointPages, o.TruncatePages = 20, 100000 // never restarted under the writer lock
	r := startReplicator(t, o)
	r.sync(t)
	app := openApp(t, db, "PRAGMA wal_autocheckpoint=0")

	deadline := time.Now().Add(30 * time.Second)
	sawBusy := false
	for i := 0; !sawBusy && time.Now().Before(deadline); i++ {
		if _, err := app.Exec("INSERT INTO t VALUES (randomblob(3000))"); err != nil {
			t.Fatal(err)
		}
		sawBusy = appCheckpoint(t, app)
	}
	if !sawBusy {
		t.Fatal("the application's checkpoints never found the lock taken while it committed into a long log")
	}
	for appCheckpoint(t, app) {
		if time.Now().After(deadline) {
			t.Fatal("the lock was still held long after the application stopped committing")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestApplicationKill9WhileCheckpointsHeld kills an application that
// commits at full speed, so into a log that ferry keeps past
// CheckpointPages with the checkpoint lock held, again and again, at
// random moments: its next run must open the database (recovering the
// wal-index if the kill tore it) and commit, and the replica must end
// exactly as the database.
func TestApplicationKill9WhileCheckpointsHeld(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://appkill": store})
	o.CheckpointPages, o.TruncatePages = 200, 400
	r := startReplicator(t, o)
	r.sync(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const kills = 8
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"=inserter", envDB+"="+db, envFor+"=30s")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Killed once it has committed for a while: ferry has seen new
		// commits since the last kill.
		before := r.Status().TXID
		for end := time.Now().Add(20 * time.Second); r.Status().TXID < before+2000; time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("run %d of the application committed nothing ferry saw in 20 s (txid %d)", i+1, r.Status().TXID)
			}
		}
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
	}
	n := runInserter(t, db, "1s")
	last := r.sync(t)
	out, res := restoreAt(t, store, 0, dir)
	defer os.Remove(out)
	if got, live := sha3(t, out), sha3(t, db); got != live || res.TXID != last {
		t.Fatalf("after %d kills and %d more commits: latest restore is txid %d with hash %s; want txid %d, hash %s",
			kills, n, res.TXID, got, last, live)
	}
}

// TestCheckpointHoldAloneClosesItsFile: with nothing else of the process
// using the database, the hold's end closes the -shm file it opened, so
// that a daemon of many databases that go idle keeps no descriptor for
// each; the next hold opens it again.
func TestCheckpointHoldAloneClosesItsFile(t *testing.T) {
	path, app := logged(t)
	// Another process keeps the database open, so that its -shm file
	// stays; nothing of this one uses the database but the holds.
	sh := exec.Command(needCLI(t), path)
	in, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer sh.Wait()
	defer in.Close()
	if _, err := io.WriteString(in, "SELECT count(*) FROM t;\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "20\n" {
		t.Fatalf("the shell read %q, %v", line, err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	h := openCheckpointHold(path, true)
	if h == nil {
		t.Fatal("no checkpoint hold")
	}
	id := h.shm.id
	if err := h.set(true); err != nil || !h.isHeld() {
		t.Fatalf("hold not taken: %v", err)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	shmFiles.Lock()
	_, kept := shmFiles.byID[id]
	shmFiles.Unlock()
	if kept {
		t.Fatal("the -shm file stayed open after the hold of a process alone with the database ended")
	}
	again := openCheckpointHold(path, true)
	if again == nil {
		t.Fatal("no hold after the file was closed")
	}
	if err := again.set(true); err != nil || !again.isHeld() {
		t.Fatalf("hold not taken again: %v", err)
	}
	again.close()
}
