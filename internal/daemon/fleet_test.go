package daemon_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// fleetRig runs the daemon in this process on one dir entry with a
// file:// replica.
type fleetRig struct {
	t       *testing.T
	dir     string // the databases
	replica string // the dir entry's replica URL
	addr    string
	log     *testenv.LogBuffer
	cancel  context.CancelFunc
	done    chan error
}

func startFleet(t *testing.T, dir, entry string, idleAfter time.Duration) *fleetRig {
	t.Helper()
	return startFleetAt(t, dir, entry, idleAfter, "file://"+filepath.Join(t.TempDir(), "replica"))
}

// startFleetAt is startFleet with the dir entry's replica URL given.
func startFleetAt(t *testing.T, dir, entry string, idleAfter time.Duration, replica string) *fleetRig {
	t.Helper()
	base := t.TempDir()
	r := &fleetRig{t: t, dir: dir, replica: replica, log: &testenv.LogBuffer{}, done: make(chan error, 1)}
	yaml := fmt.Sprintf("addr: 127.0.0.1:0\ndbs:\n  - dir: %s\n%s    replicas: [%s]\n", dir, entry, r.replica)
	cfg, err := config.Parse([]byte(yaml), "ferry.yml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	ready := make(chan string, 1)
	go func() {
		r.done <- daemon.Run(ctx, cfg, daemon.Options{
			FilesSpool: filepath.Join(base, "files"),
			Log:        slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
			IdleAfter:  idleAfter,
			Ready:      func(addr string) { ready <- addr },
		})
	}()
	select {
	case r.addr = <-ready:
	case err := <-r.done:
		t.Fatalf("daemon stopped at start: %v\n%s", err, r.log)
	case <-time.After(2 * time.Minute):
		t.Fatalf("daemon not ready\n%s", r.log)
	}
	t.Cleanup(r.stop)
	return r
}

func (r *fleetRig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		r.t.Errorf("daemon stopped with %v", err)
	}
}

func (r *fleetRig) status() daemon.StatusReport {
	r.t.Helper()
	resp, err := http.Get("http://" + r.addr + "/status")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep daemon.StatusReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		r.t.Fatal(err)
	}
	return rep
}

func (r *fleetRig) dbStatus(path string) (daemon.DBStatus, bool) {
	for _, db := range r.status().DBs {
		if db.DB == path {
			return db, true
		}
	}
	return daemon.DBStatus{}, false
}

// sync asks the daemon to sync one database, or all with "".
func (r *fleetRig) sync(path string) daemon.SyncReport {
	r.t.Helper()
	q := url.Values{"timeout": {"60s"}}
	if path != "" {
		q.Set("db", path)
	}
	resp, err := http.Post("http://"+r.addr+"/sync?"+q.Encode(), "", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep daemon.SyncReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		r.t.Fatal(err)
	}
	if !rep.Done {
		r.t.Fatalf("sync %s: %s\n%s", path, rep.Error, r.log)
	}
	return rep
}

// eventually waits for ok, looking again as the daemon's state changes;
// what it waits on (a file event, a settle delay) has no event of its own
// the test can take.
func eventually(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restoreDB restores the database at rel under the rig's replica to a new
// file, at txid (0: the latest).
func (r *fleetRig) restoreDB(rel string, txid uint64) string {
	r.t.Helper()
	ctx := context.Background()
	store, err := target.OpenURL(ctx, r.replica+"/"+rel, target.Options{MustExist: true})
	if err != nil {
		r.t.Fatal(err)
	}
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		r.t.Fatal(err)
	}
	plan, err := cat.PlanTXID(txid)
	if err != nil {
		r.t.Fatalf("%s txid %d: %v", rel, txid, err)
	}
	out := filepath.Join(r.t.TempDir(), "restored.db")
	if _, err := restore.ToFile(ctx, store, plan, out, restore.Options{}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

func sha3sum(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", "-readonly", path, ".sha3sum").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s .sha3sum: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

func integrity(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("sqlite3", "-readonly", path, "PRAGMA integrity_check").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("integrity_check %s: %v: %s", path, err, out)
	}
}

// makeDB creates a database in WAL mode with a table, and returns it
// open, as an application would hold it.
func makeDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	return db
}

// row is the content commit k writes, so that a restored database can be
// checked to be the state after some commit.
func row(k int) string { return strings.Repeat(fmt.Sprintf("%08d", k), 16) }

func commit(t *testing.T, db *sql.DB, k int) {
	t.Helper()
	if _, err := db.Exec("INSERT INTO t(k, v) VALUES(?, ?)", k, row(k)); err != nil {
		t.Error(err)
	}
}

// committedState checks that a restored database is the state after
// some commit k of the writer (rows 1..k, each as commit wrote it) and
// returns k.
func committedState(t *testing.T, path string) int {
	t.Helper()
	integrity(t, path)
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, maxK int
	var bad int
	if err := db.QueryRow("SELECT count(*), coalesce(max(k), 0) FROM t").Scan(&n, &maxK); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SELECT k, v FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k int
		var v string
		rows.Scan(&k, &v)
		if v != row(k) {
			bad++
		}
	}
	if n != maxK || bad > 0 {
		t.Fatalf("%s is no committed state: %d rows, newest %d, %d rows not as committed", path, n, maxK, bad)
	}
	return n
}

// TestFleetWatchedDirectory adds and removes databases under a watched
// directory while another takes commits: a new one is replicated and
// restores exactly, a removed one stops, the busy one sees no gap, and a
// file that is not a database is skipped with one line.
func TestFleetWatchedDirectory(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		needSQLite3(t)
	}
	dir := t.TempDir()
	busy := makeDB(t, filepath.Join(dir, "busy.db"))
	gone := makeDB(t, filepath.Join(dir, "gone.db"))
	commit(t, gone, 1)
	gone.Close()
	makeDB(t, filepath.Join(dir, "eu", "deep.db"))
	os.WriteFile(filepath.Join(dir, "notes.db"), []byte("not a database, but named like one\n"), 0o644)
	rig := startFleet(t, dir, "    recursive: true\n    watch: true\n", 300*time.Millisecond)

	var wg sync.WaitGroup
	stopWriting := make(chan struct{})
	wg.Add(1)
	k := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopWriting:
				return
			case <-time.After(20 * time.Millisecond):
			}
			k++
			commit(t, busy, k)
		}
	}()

	for _, path := range []string{"busy.db", "gone.db", "eu/deep.db"} {
		rig.sync(filepath.Join(dir, path))
	}
	if n := strings.Count(rig.log.String(), "skipping a file that is not a SQLite database in WAL mode"); n != 1 || !strings.Contains(rig.log.String(), "notes.db") {
		t.Fatalf("notes.db skipped with %d lines\n%s", n, rig.log)
	}

	// A database appears, made as an application makes one.
	added := filepath.Join(dir, "eu", "added.db")
	app := makeDB(t, added)
	for i := 1; i <= 20; i++ {
		commit(t, app, i)
	}
	eventually(t, "the new database picked up", 10*time.Second, func() bool {
		_, ok := rig.dbStatus(added)
		return ok
	})
	rig.sync(added)
	if got, want := sha3sum(t, rig.restoreDB("eu/added.db", 0)), sha3sum(t, added); got != want {
		t.Fatalf("the new database restored as %s, source %s", got, want)
	}

	// A directory appears, with a database in it.
	deeper := filepath.Join(dir, "new", "deeper.db")
	app2 := makeDB(t, deeper)
	commit(t, app2, 1)
	eventually(t, "the database of a new directory picked up", 10*time.Second, func() bool {
		_, ok := rig.dbStatus(deeper)
		return ok
	})
	rig.sync(deeper)
	if got, want := sha3sum(t, rig.restoreDB("new/deeper.db", 0)), sha3sum(t, deeper); got != want {
		t.Fatalf("new/deeper.db restored as %s, source %s", got, want)
	}

	// A database vanishes.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(dir, "gone.db") + suffix)
	}
	eventually(t, "the removed database stopped", 10*time.Second, func() bool {
		_, ok := rig.dbStatus(filepath.Join(dir, "gone.db"))
		return !ok
	})

	close(stopWriting)
	wg.Wait()
	rig.sync(filepath.Join(dir, "busy.db"))
	st, _ := rig.dbStatus(filepath.Join(dir, "busy.db"))
	if len(st.Gaps) > 0 {
		t.Fatalf("the busy database has gaps: %+v", st.Gaps)
	}
	out := rig.restoreDB("busy.db", 0)
	if got := committedState(t, out); got != k {
		t.Fatalf("busy.db restored to commit %d, wrote %d", got, k)
	}
	if got, want := sha3sum(t, out), sha3sum(t, filepath.Join(dir, "busy.db")); got != want {
		t.Fatalf("busy.db restored as %s, source %s", got, want)
	}
}

// TestFleetBurstyIdle drives 100 databases through bursts of commits with
// quiet spells that let them go idle, the application checkpointing now
// and then, so that every database is woken again and again. Every
// restore, at the latest txid and at txids in between, is a committed
// state; the latest equals the source; a break, where the application
// checkpointed away commits ferry had not read yet, shows as a gap.
func TestFleetBurstyIdle(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		needSQLite3(t)
	}
	const n = 100
	dir := t.TempDir()
	dbs := make([]*sql.DB, n)
	commits := make([]int, n)
	name := func(i int) string { return fmt.Sprintf("tenant-%03d.db", i) }
	for i := range dbs {
		dbs[i] = makeDB(t, filepath.Join(dir, name(i)))
	}
	rig := startFleet(t, dir, "", 200*time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	bursts, truncated := 0, 0
	deadline := time.Now().Add(15 * time.Second)
	for round := 0; time.Now().Before(deadline); round++ {
		// A burst on a few databases, then a quiet spell longer than the
		// idle time.
		for range 10 {
			i := rng.IntN(n)
			for range 1 + rng.IntN(30) {
				commits[i]++
				commit(t, dbs[i], commits[i])
			}
			if rng.IntN(4) == 0 {
				// Completed only when ferry held no read transaction: the
				// database was idle, or not yet awake after the burst.
				var busy, log, done int
				if err := dbs[i].QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done); err == nil && busy == 0 {
					truncated++
				}
			}
			bursts++
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
	}
	rig.sync("")
	rep := rig.status()
	if len(rep.DBs) != n {
		t.Fatalf("%d databases in the status, want %d", len(rep.DBs), n)
	}
	breaks, idle := 0, 0
	for _, db := range rep.DBs {
		breaks += len(db.Gaps)
		if db.State == "idle" {
			idle++
		}
	}
	for i := range dbs {
		if commits[i] == 0 {
			continue
		}
		rig.sync(filepath.Join(dir, name(i)))
		out := rig.restoreDB(name(i), 0)
		if got := committedState(t, out); got != commits[i] {
			t.Fatalf("%s restored to commit %d, wrote %d", name(i), got, commits[i])
		}
		if got, want := sha3sum(t, out), sha3sum(t, filepath.Join(dir, name(i))); got != want {
			t.Fatalf("%s restored as %s, source %s", name(i), got, want)
		}
		// A txid in the middle is a committed state too.
		st, _ := rig.dbStatus(filepath.Join(dir, name(i)))
		// Each break the daemon reports is one the replica shows, as
		// 'ferry txids' lists it.
		if len(st.Gaps) > 0 {
			store, err := target.OpenURL(context.Background(), rig.replica+"/"+name(i), target.Options{MustExist: true})
			if err != nil {
				t.Fatal(err)
			}
			cat, err := restore.ReadCatalog(context.Background(), store)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range st.Gaps {
				if !slices.Contains(cat.Breaks, g.First) {
					t.Fatalf("%s: the daemon reports a break at txid %d, the replica's breaks are %v", name(i), g.First, cat.Breaks)
				}
			}
		}
		if st.TXID > 2 {
			committedState(t, rig.restoreDB(name(i), 1+uint64(rng.IntN(int(st.TXID-1)))))
		}
	}
	t.Logf("%d databases, %d took commits (%d in all) in %d bursts; %d bursts ended in a TRUNCATE checkpoint that completed; breaks reported as gaps: %d; idle at the end: %d",
		n, countNonZero(commits), sum(commits), bursts, truncated, breaks, idle)
}

func countNonZero(xs []int) int {
	c := 0
	for _, x := range xs {
		if x > 0 {
			c++
		}
	}
	return c
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// needSQLite3 fails under CI, where scripts/test installs the sqlite3
// command, and skips elsewhere.
func needSQLite3(t *testing.T) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal("the sqlite3 command is not on PATH")
	}
	t.Skip("needs the sqlite3 command")
}

// TestFleetReload replaces the config of a running daemon: a directory
// and a database added start, a directory removed stops, and a database
// left as it was goes on with no gap while it takes commits.
func TestFleetReload(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		needSQLite3(t)
	}
	root, base := t.TempDir(), t.TempDir()
	keep := filepath.Join(root, "keep.db")
	one, two := filepath.Join(root, "one"), filepath.Join(root, "two")
	for _, p := range []string{filepath.Join(one, "a.db"), filepath.Join(two, "b.db"), filepath.Join(root, "late.db")} {
		db := makeDB(t, p)
		commit(t, db, 1)
		db.Close()
	}
	app := makeDB(t, keep)
	parse := func(yaml string) *config.Config {
		cfg, err := config.Parse([]byte(strings.ReplaceAll(yaml, "BASE", base)), "ferry.yml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first := parse(fmt.Sprintf("addr: 127.0.0.1:0\ndbs:\n  - path: %s\n    replicas: [file://BASE/keep]\n  - dir: %s\n    replicas: [file://BASE/one]\n", keep, one))
	second := parse(fmt.Sprintf("addr: 127.0.0.1:0\ndbs:\n  - path: %s\n    replicas: [file://BASE/keep]\n  - dir: %s\n    replicas: [file://BASE/two]\n  - path: %s\n    replicas: [file://BASE/late]\n", keep, two, filepath.Join(root, "late.db")))
	reload := make(chan *config.Config)
	rig := &fleetRig{t: t, log: &testenv.LogBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	rig.cancel = cancel
	ready := make(chan string, 1)
	go func() {
		rig.done <- daemon.Run(ctx, first, daemon.Options{FilesSpool: filepath.Join(base, "files"), Reload: reload, IdleAfter: 200 * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(rig.log, nil)), Ready: func(addr string) { ready <- addr }})
	}()
	rig.addr = <-ready
	t.Cleanup(rig.stop)
	dbs := func() []string {
		var out []string
		for _, db := range rig.status().DBs {
			out = append(out, db.DB)
		}
		return out
	}
	if got := dbs(); len(got) != 2 {
		t.Fatalf("before the reload: %q", got)
	}
	k := 0
	for range 10 {
		k++
		commit(t, app, k)
	}
	rig.sync(keep)
	reload <- second
	eventually(t, "the reload", 30*time.Second, func() bool {
		got := dbs()
		return len(got) == 3 && slices.Contains(got, filepath.Join(two, "b.db")) && slices.Contains(got, filepath.Join(root, "late.db"))
	})
	for range 10 {
		k++
		commit(t, app, k)
	}
	for _, p := range []string{keep, filepath.Join(two, "b.db"), filepath.Join(root, "late.db")} {
		rig.sync(p)
	}
	st, _ := rig.dbStatus(keep)
	if len(st.Gaps) > 0 || st.TXID < uint64(k) {
		t.Fatalf("the database kept through the reload: txid %d after %d commits, gaps %+v", st.TXID, k, st.Gaps)
	}
	if _, err := os.Stat(daemon.DirSocketPath(one)); !os.IsNotExist(err) {
		t.Fatalf("the removed directory's socket is still there: %v", err)
	}
	if !strings.Contains(rig.log.String(), "reloaded the config") {
		t.Fatalf("no reload in the log:\n%s", rig.log)
	}
	rig.replica = "file://" + base + "/keep"
	if got, want := sha3sum(t, rig.restoreDB("", 0)), sha3sum(t, keep); got != want {
		t.Fatalf("keep.db restored as %s, source %s", got, want)
	}
}

// TestFleetStalledTargetStarvesNoOther runs two dir entries, one whose
// replica is a server that accepts connections and never answers: the
// other entry's databases replicate as if it were not there, and the
// stalled one's report the failure.
func TestFleetStalledTargetStarvesNoOther(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		needSQLite3(t)
	}
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hole.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	root, base := t.TempDir(), t.TempDir()
	stalled, healthy := filepath.Join(root, "stalled"), filepath.Join(root, "healthy")
	var apps []*sql.DB
	for i := range 20 {
		for _, d := range []string{stalled, healthy} {
			db := makeDB(t, filepath.Join(d, fmt.Sprintf("t%02d.db", i)))
			commit(t, db, 1)
			apps = append(apps, db)
		}
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`addr: 127.0.0.1:0
shutdown-timeout: 1s
dbs:
  - dir: %s
    replicas: ["s3://bucket/fleet?endpoint=http://%s&region=us-east-1&force-path-style=true"]
  - dir: %s
    replicas: [file://%s/healthy]
`, stalled, hole.Addr(), healthy, base)), "ferry.yml")
	if err != nil {
		t.Fatal(err)
	}
	rig := &fleetRig{t: t, log: &testenv.LogBuffer{}, done: make(chan error, 1), dir: healthy, replica: "file://" + base + "/healthy"}
	ctx, cancel := context.WithCancel(context.Background())
	rig.cancel = cancel
	ready := make(chan string, 1)
	go func() {
		rig.done <- daemon.Run(ctx, cfg, daemon.Options{FilesSpool: filepath.Join(base, "files"), IdleAfter: 200 * time.Millisecond,
			Target: target.Options{Timeouts: objstore.Timeouts{Op: time.Second}},
			Log:    slog.New(slog.NewTextHandler(rig.log, nil)), Ready: func(addr string) { ready <- addr }})
	}()
	start := time.Now()
	select {
	case rig.addr = <-ready:
	case err := <-rig.done:
		t.Fatalf("daemon stopped at start: %v\n%s", err, rig.log)
	}
	t.Logf("ready after %s", time.Since(start))
	t.Cleanup(func() {
		cancel()
		<-rig.done // the stalled entry's spools still hold what never went up
		t.Logf("stopped after %s", time.Since(start))
	})
	rig.cancel = nil
	for k := 2; k <= 5; k++ {
		for _, app := range apps {
			commit(t, app, k)
		}
		for i := range 20 {
			rig.sync(filepath.Join(healthy, fmt.Sprintf("t%02d.db", i)))
		}
	}
	t.Logf("healthy synced after %s", time.Since(start))
	for i := range 20 {
		out := rig.restoreDB(fmt.Sprintf("t%02d.db", i), 0)
		if got := committedState(t, out); got != 5 {
			t.Fatalf("healthy t%02d.db restored to commit %d, want 5", i, got)
		}
	}
	eventually(t, "the stalled entry to report its target failing", time.Minute, func() bool {
		st, ok := rig.dbStatus(filepath.Join(stalled, "t00.db"))
		return ok && len(st.Targets) == 1 && !st.Targets[0].FailingSince.IsZero()
	})
}

// TestFleetRestartKeepsIdle stops a daemon whose databases went idle and
// starts it again: they are idle from the start, with their txids, and
// opened only when written, with no new snapshot.
func TestFleetRestartKeepsIdle(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		needSQLite3(t)
	}
	dir := t.TempDir()
	var apps []*sql.DB
	for i := range 5 {
		app := makeDB(t, filepath.Join(dir, fmt.Sprintf("t%d.db", i)))
		commit(t, app, 1)
		apps = append(apps, app)
	}
	allIdle := func(rig *fleetRig) map[string]uint64 {
		txids := map[string]uint64{}
		eventually(t, "every database idle", time.Minute, func() bool {
			rep := rig.status()
			for _, db := range rep.DBs {
				if db.State != "idle" {
					return false
				}
				txids[db.DB] = db.TXID
			}
			return len(rep.DBs) == 5
		})
		return txids
	}
	first := startFleet(t, dir, "", 100*time.Millisecond)
	before := allIdle(first)
	first.stop()

	second := startFleetAt(t, dir, "", 100*time.Millisecond, first.replica)
	rep := second.status()
	for _, db := range rep.DBs {
		if db.State != "idle" || db.TXID != before[db.DB] || db.TXID == 0 {
			t.Fatalf("after the restart %s is %s at txid %d, was idle at %d", db.DB, db.State, db.TXID, before[db.DB])
		}
	}
	commit(t, apps[2], 2)
	path := filepath.Join(dir, "t2.db")
	second.sync(path)
	if got, want := sha3sum(t, second.restoreDB("t2.db", 0)), sha3sum(t, path); got != want {
		t.Fatalf("t2.db restored as %s, source %s", got, want)
	}
	if strings.Contains(second.log.String(), "snapshot stored") {
		t.Fatalf("the restart took a snapshot:\n%s", second.log)
	}
}
