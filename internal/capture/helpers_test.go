package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
)

// roleEnv makes the test binary play a child process: the writer of the
// oracle test, the replicator of the crash test, or the fast inserter.
const roleEnv = "FERRY_CAPTURE_TEST_ROLE"

func TestMain(m *testing.M) {
	// As the ferry daemon does: images then read the database file, and
	// the daemon's tests cover reads through sqlite_dbpage.
	if _, err := sqlite.OFDLocking(true); err != nil {
		fmt.Fprintln(os.Stderr, "OFD locks:", err)
		os.Exit(1)
	}
	switch os.Getenv(roleEnv) {
	case "writer":
		writerChild()
		os.Exit(0)
	case "replicator":
		replicatorChild()
		os.Exit(0)
	case "inserter":
		inserterChild()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the S3 client.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// needCLI returns the sqlite3 command-line shell, the oracle nobody here
// wrote.
func needCLI(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Fatalf("the sqlite3 command-line shell is needed as the oracle (apt-get install sqlite3): %v", err)
	}
	return p
}

// cli runs the sqlite3 shell on path, read-only, and returns its output.
// It runs in another process, so the test process never opens and closes
// the live database file itself (which would drop its connections' POSIX
// locks).
func cli(path string, args ...string) (string, error) {
	out, err := exec.Command("sqlite3", append([]string{"-readonly", path}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("sqlite3 %s %v: %v: %s", path, args, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// sha3 returns the shell's content hash of the database at path.
func sha3(t testing.TB, path string) string {
	t.Helper()
	out, err := cli(path, ".sha3sum")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// openApp opens a connection to path as an application would.
func openApp(t testing.TB, path string, pragmas ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteURI(path, "_pragma=busy_timeout(5000)"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	for _, p := range pragmas {
		if _, err := db.Exec(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	return db
}

// newDB creates a database in WAL mode with the given page size and
// closes it again, so that the test starts from a database at rest.
func newDB(t testing.TB, dir string, pageSize int, setup ...string) string {
	t.Helper()
	path := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	stmts := append([]string{fmt.Sprintf("PRAGMA page_size=%d", pageSize), "PRAGMA journal_mode=WAL"}, setup...)
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return path
}

// replicator runs a Replicator in the test process.
type replicator struct {
	*Replicator
	cancel context.CancelFunc
	done   chan error
}

func startReplicator(t testing.TB, o Options) *replicator {
	t.Helper()
	r, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &replicator{Replicator: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rp.done <- r.Run(ctx) }()
	t.Cleanup(rp.stop)
	return rp
}

func (r *replicator) stop() {
	r.cancel()
	if err := <-r.done; err != nil {
		panic(err)
	}
	r.done <- nil
}

func (r *replicator) sync(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	txid, err := r.Sync(ctx)
	if err != nil {
		t.Fatalf("sync: %v; status %+v", err, r.Status())
	}
	return txid
}

// restoreAt restores store to txid (0: the latest) into a new file in dir.
func restoreAt(t testing.TB, store objstore.Store, txid uint64, dir string) (string, restore.Result) {
	t.Helper()
	out, res, err := restoreTo(store, txid, dir)
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

// errNotRestorable means the replica has no chain to the txid asked for.
var errNotRestorable = errors.New("not restorable")

func restoreTo(store objstore.Store, txid uint64, dir string) (string, restore.Result, error) {
	ctx := context.Background()
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		return "", restore.Result{}, err
	}
	plan, err := cat.PlanTXID(txid)
	if err != nil {
		if errors.Is(err, restore.ErrNoSnapshot) {
			return "", restore.Result{}, err
		}
		return "", restore.Result{}, fmt.Errorf("txid %d: %w: %v", txid, errNotRestorable, err)
	}
	f, err := os.CreateTemp(dir, "restored-*.db")
	if err != nil {
		return "", restore.Result{}, err
	}
	out := f.Name()
	f.Close()
	os.Remove(out)
	res, err := restore.ToFile(ctx, store, plan, out, restore.Options{})
	if err != nil {
		return "", restore.Result{}, fmt.Errorf("restore txid %d: %w", txid, err)
	}
	return out, res, nil
}

// marker reads the commit number the test's writers keep in every
// database they write.
func marker(t testing.TB, path string) int {
	t.Helper()
	k, err := markerOf(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func markerOf(path string) (int, error) {
	db, err := sql.Open("sqlite", sqliteURI(path, "mode=ro"))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var k int
	if err := db.QueryRow("SELECT k FROM app_meta").Scan(&k); err != nil {
		return 0, fmt.Errorf("read marker of %s: %w", path, err)
	}
	return k, nil
}

// findCommit restores the txid whose database carries marker k and
// returns its path, or "" when no txid does (k was folded into a break).
// The marker grows with the txid, one commit per txid while the log keeps
// continuity, so the guess is corrected by the difference, then bisected.
func findCommit(store objstore.Store, dir string, k int, guess, last uint64) (string, uint64, error) {
	lo, hi := uint64(1), last
	for range 40 {
		if guess < lo || guess > hi {
			guess = lo + (hi-lo)/2
		}
		path, res, err := restoreTo(store, guess, dir)
		if errors.Is(err, errNotRestorable) {
			lo = guess + 1
			if lo > hi {
				return "", 0, nil
			}
			guess = 0
			continue
		}
		if err != nil {
			return "", 0, err
		}
		m, err := markerOf(path)
		if err != nil {
			return "", 0, err
		}
		switch {
		case m == k:
			return path, res.TXID, nil
		case m < k:
			lo = guess + 1
			guess += uint64(k - m)
		default:
			hi = guess - 1
			guess -= min(guess, uint64(m-k))
		}
		os.Remove(path)
		if lo > hi {
			return "", 0, nil
		}
	}
	return "", 0, fmt.Errorf("no txid found for commit %d", k)
}
