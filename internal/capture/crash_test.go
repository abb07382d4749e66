package capture

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/restore"
)

// kvWriter is the application of the crash test: small transactions on a
// key-value table, with the content hash of every commit kept in memory
// (the XOR of a SHA-256 per row, updated as rows change), so that any
// restored database can be checked against the commit it claims to be.
type kvWriter struct {
	db     *sql.DB
	rng    *rand.Rand
	rows   map[int64][32]byte
	hash   [32]byte
	hashes [][32]byte // by commit number
	nextID int64

	mu  sync.Mutex // held while a commit is in flight; pause takes it
	err error
	// worst is the longest a commit took; timings has every commit's
	// start and duration. Both are for reading once run has returned.
	worst   time.Duration
	timings []commitTiming
	stop    chan struct{}
	done    chan struct{}
}

func rowHash(id int64, v []byte) [32]byte {
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, id)
	h.Write(v)
	return [32]byte(h.Sum(nil))
}

func xorInto(a *[32]byte, b [32]byte) {
	for i := range a {
		a[i] ^= b[i]
	}
}

func (w *kvWriter) step() error {
	r := w.rng
	tx, err := w.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	h := w.hash
	changed := map[int64]*[32]byte{}
	for range 1 + r.IntN(4) {
		ids := len(w.rows)
		switch p := r.IntN(10); {
		case p < 5 || ids < 20:
			size := 10 + r.IntN(2000)
			if r.IntN(30) == 0 {
				size = 100_000
			}
			v := make([]byte, size)
			for i := range v {
				v[i] = byte(r.IntN(16))
			}
			id := w.nextID
			if p >= 3 && ids > 0 {
				id = r.Int64N(w.nextID)
			} else {
				w.nextID++
			}
			if _, err := tx.Exec("INSERT OR REPLACE INTO kv(id, v) VALUES(?, ?)", id, v); err != nil {
				return err
			}
			if old, ok := w.rows[id]; ok {
				xorInto(&h, old)
			}
			nh := rowHash(id, v)
			xorInto(&h, nh)
			w.rows[id] = nh
			changed[id] = &nh
		default:
			id := r.Int64N(w.nextID)
			if _, err := tx.Exec("DELETE FROM kv WHERE id=?", id); err != nil {
				return err
			}
			if old, ok := w.rows[id]; ok {
				xorInto(&h, old)
				delete(w.rows, id)
			}
		}
	}
	k := len(w.hashes)
	if _, err := tx.Exec("UPDATE app_meta SET k=?", k); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	w.hash = h
	w.hashes = append(w.hashes, h)
	return nil
}

// dbHash computes what kvWriter keeps for the database at path.
func dbHash(path string) ([32]byte, int, error) {
	var h [32]byte
	db, err := sql.Open("sqlite", sqliteURI(path, "mode=ro"))
	if err != nil {
		return h, 0, err
	}
	defer db.Close()
	rows, err := db.Query("SELECT id, v FROM kv")
	if err != nil {
		return h, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var v []byte
		if err := rows.Scan(&id, &v); err != nil {
			return h, 0, err
		}
		xorInto(&h, rowHash(id, v))
	}
	var k int
	if err := db.QueryRow("SELECT k FROM app_meta").Scan(&k); err != nil {
		return h, 0, err
	}
	return h, k, rows.Err()
}

func (w *kvWriter) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		w.mu.Lock()
		start := time.Now()
		err := w.step()
		took := time.Since(start)
		w.mu.Unlock()
		w.timings = append(w.timings, commitTiming{start, took})
		w.worst = max(w.worst, took)
		if err != nil {
			w.err = err
			return
		}
		time.Sleep(time.Duration(w.rng.IntN(3)) * time.Millisecond)
	}
}

// startKVWriter starts a kvWriter on a new connection to db.
func startKVWriter(t *testing.T, db string, rng *rand.Rand) *kvWriter {
	w := &kvWriter{
		db:     openApp(t, db, "PRAGMA synchronous=NORMAL"),
		rng:    rng,
		rows:   map[int64][32]byte{},
		hashes: [][32]byte{{}},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go w.run()
	return w
}

// halt stops the writer, if it is still running, and waits for it.
func (w *kvWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

type commitTiming struct {
	start time.Time
	took  time.Duration
}

// worstDuring is the longest commit that started between from and to.
func (w *kvWriter) worstDuring(from, to time.Time) time.Duration {
	var worst time.Duration
	for _, c := range w.timings {
		if !c.start.Before(from) && c.start.Before(to) {
			worst = max(worst, c.took)
		}
	}
	return worst
}

// replicatorProc is the replicator child of the crash test.
type replicatorProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *bytes.Buffer
}

func startReplicatorProc(t *testing.T, db, spoolDir, storeDir string, env ...string) *replicatorProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=replicator", envDB+"="+db, envSpool+"="+spoolDir, envStore+"="+storeDir)
	cmd.Env = append(cmd.Env, env...)
	p := &replicatorProc{cmd: cmd, lines: make(chan string, 16), stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if os.Getenv("FERRY_CAPTURE_TEST_LOG") != "" {
		cmd.Stderr = io.MultiWriter(p.stderr, os.Stderr)
	}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	if line := p.next(t, 30*time.Second); line != "ready" {
		p.kill(t)
		t.Fatalf("replicator said %q: %s", line, p.stderr)
	}
	return p
}

func (p *replicatorProc) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.cmd.Wait()
			t.Fatalf("replicator exited: %s", p.stderr)
		}
		return line
	case <-time.After(d):
		p.kill(t)
		t.Fatalf("replicator silent for %v: %s", d, p.stderr)
	}
	return ""
}

func (p *replicatorProc) sync(t *testing.T) {
	t.Helper()
	fmt.Fprintln(p.stdin, "sync")
	if line := p.next(t, 90*time.Second); !strings.HasPrefix(line, "synced ") {
		t.Fatalf("replicator answered sync with %q: %s", line, p.stderr)
	}
}

func (p *replicatorProc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("replicator ended by itself (%v): %s", err, p.stderr)
	}
}

// TestCrashKill9 kills the replicator, a child process, with SIGKILL at
// random moments while the application writes, at least 20 times, and
// restarts it each time. After every kill, what the replica restores is a
// committed state; every few kills, and at the end, with the application
// paused and Sync done, it restores to exactly the live database.
func TestCrashKill9(t *testing.T) { crashKill9(t) }

// TestCrashKill9DuringRestarts is TestCrashKill9 with every checkpoint
// that takes the writer lock a RESTART checkpoint, from a log of sixty
// frames: kills land while one holds the lock and waits for ferry's
// reader, or between the handovers of that reader.
func TestCrashKill9DuringRestarts(t *testing.T) { crashKill9(t, envRestart+"=1") }

// crashKill9 runs the kill test with the replicator child's environment
// extended by env.
func crashKill9(t *testing.T, env ...string) {
	needCLI(t)
	// minRestores is the floor on intermediate restores that succeed, so
	// that a replica that restores nothing between kills cannot pass by
	// skipping them all. On a loaded 2-core machine, 7 runs of 22 kills
	// restored 12, 20, 15, 18, 18, 15 and 18 times: the kills before the
	// first Sync (the fifth) mostly find no snapshot yet, and now and
	// then a few in a row find a change set missing behind later ones.
	// 6 is half the worst of those. With 6 kills only the last two come
	// after a Sync, too few for a floor that could not fail by chance.
	kills, minRestores := 22, 6
	if testing.Short() {
		kills, minRestores = 6, 0
	}
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE app_meta(k INTEGER)", "INSERT INTO app_meta VALUES(0)", "CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB)")
	spoolDir, storeDir := filepath.Join(dir, "spool"), filepath.Join(dir, "replica")
	store, err := filestore.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	w := startKVWriter(t, db, rand.New(rand.NewPCG(seed, 4)))
	defer w.halt()

	exact := func(p *replicatorProc) {
		w.mu.Lock()
		defer w.mu.Unlock()
		p.sync(t)
		k := len(w.hashes) - 1
		out, res := restoreAt(t, store, 0, dir)
		defer os.Remove(out)
		if got, live := sha3(t, out), sha3(t, db); got != live {
			t.Fatalf("after sync, txid %d restores hash %s, the live database has %s", res.TXID, got, live)
		}
		if h, m, err := dbHash(out); err != nil || m != k || h != w.hashes[k] {
			t.Fatalf("after sync, txid %d restores commit %d (%v), want commit %d", res.TXID, m, err, k)
		}
	}
	restores, noSnapshot, notRestorable, restarts := 0, 0, 0, 0
	for i := range kills {
		p := startReplicatorProc(t, db, spoolDir, storeDir, env...)
		if i%5 == 4 {
			exact(p)
		}
		time.Sleep(time.Duration(400+rng.IntN(400)) * time.Millisecond)
		p.kill(t)
		restarts += restartsDone(p.stderr.String())
		if strings.Contains(p.stderr.String(), "failed") {
			f, _ := os.OpenFile("/tmp/child-fail.log", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			f.Write(p.stderr.Bytes())
			f.Close()
		}
		if w.err != nil {
			t.Fatalf("application: %v", w.err)
		}
		out, res, err := restoreTo(store, 0, dir)
		if errors.Is(err, errNotRestorable) || (errors.Is(err, restore.ErrNoSnapshot) && restores == 0) {
			// Killed, every time so far, before the first snapshot was
			// stored; once one was, the replica must always restore.
			t.Logf("after kill %d the replica restores nothing: %v", i+1, err)
			if errors.Is(err, errNotRestorable) {
				notRestorable++
			} else {
				noSnapshot++
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		h, k, err := dbHash(out)
		os.Remove(out)
		w.mu.Lock()
		ok := err == nil && k < len(w.hashes) && h == w.hashes[k]
		w.mu.Unlock()
		if !ok {
			t.Fatalf("after kill %d, txid %d restores commit %d (%v), whose content it does not have", i+1, res.TXID, k, err)
		}
		restores++
	}
	w.halt()
	p := startReplicatorProc(t, db, spoolDir, storeDir, env...)
	exact(p)
	p.kill(t)
	t.Logf("%d kills, %d commits; every restore in between was a committed state (%d checked; %d found no snapshot yet, %d no chain)",
		kills, len(w.hashes)-1, restores, noSnapshot, notRestorable)
	if restores < minRestores {
		t.Fatalf("only %d of %d restores after a kill succeeded, fewer than %d: the checks above hardly ran", restores, kills, minRestores)
	}
	if slices.Contains(env, envRestart+"=1") {
		t.Logf("%d RESTART checkpoints completed between the kills", restarts)
		if restarts < kills/4 {
			t.Fatalf("%d RESTART checkpoints completed in %d runs of the replicator: the kills hardly met one", restarts, kills)
		}
	}
}

// restartsDone counts the RESTART checkpoints that completed in a
// replicator's debug log.
func restartsDone(log string) int {
	n := 0
	for line := range strings.Lines(log) {
		if strings.Contains(line, `msg="checkpoint RESTART"`) && strings.Contains(line, " busy=false ") {
			n++
		}
	}
	return n
}
