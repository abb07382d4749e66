package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the application's SQLite
)

// appEnv carries an appJob to the test binary re-executed as the
// application.
const appEnv = "FERRY_BENCH_APP"

// appJob is what the application process does to its database.
type appJob struct {
	// Do is "create" (an empty table in WAL mode), "insert" (1-row
	// transactions), "latency" (1-row transactions, each timed), "build" (a database of Bytes
	// of wide rows), "append" (Rows wide rows in one transaction) or
	// "update" (Rows distinct wide rows, chosen at random among the first
	// MaxID, rewritten in one transaction).
	Do string
	DB string

	// Interval paces inserts: commit i is started at i*Interval from the
	// first. Zero means as fast as possible.
	Interval time.Duration
	// Count and For stop the inserts; zero means no limit.
	Count int
	For   time.Duration
	// Report prints every commit as it returns.
	Report bool

	Bytes int64
	Rows  int
	MaxID int64
}

// wideRow is the size of the rows of the snapshot benchmark's table: two
// do not fit on a 4 KiB page, so each leaf page holds exactly one, and
// rewriting n distinct rows rewrites n distinct pages and nothing else.
const wideRow = 3000

// rowBytes is the size of a 1-row insert's value. Its first markerLen
// bytes are random and identify the commit inside a replica's objects.
const (
	rowBytes  = 100
	markerLen = 16
)

// commitLine is how the application reports each commit.
type commitLine struct {
	seq    int
	at     time.Time
	marker []byte
}

// appMain runs the application job in env and exits.
func appMain(env string) {
	var job appJob
	err := json.Unmarshal([]byte(env), &job)
	if err == nil {
		err = job.run(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func openApp(path string) (*sql.DB, error) {
	q := url.Values{"_pragma": {"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(NORMAL)"}}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

func (j appJob) run(out io.Writer) error {
	if j.Do == "build" {
		return build(j.DB, j.Bytes, out)
	}
	db, err := openApp(j.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	switch j.Do {
	case "create":
		_, err = db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	case "insert":
		return j.insert(db, out)
	case "latency":
		return j.latencies(db, out)
	case "append":
		_, err = db.Exec(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < ?)
			INSERT INTO t(v) SELECT randomblob(?) FROM c`, j.Rows, wideRow)
	case "update":
		err = j.update(db)
	default:
		err = fmt.Errorf("unknown application job %q", j.Do)
	}
	if err == nil {
		_, err = fmt.Fprintln(out, "done")
	}
	return err
}

// insert commits 1-row transactions and prints "done COUNT NANOSECONDS".
func (j appJob) insert(db *sql.DB, out io.Writer) error {
	stmt, err := db.Prepare("INSERT INTO t(v) VALUES(?)")
	if err != nil {
		return err
	}
	defer stmt.Close()
	w := bufio.NewWriter(out)
	v := make([]byte, rowBytes)
	start := time.Now()
	n := 0
	for ; j.Count == 0 || n < j.Count; n++ {
		if j.Interval > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(n) * j.Interval)))
		}
		if j.For > 0 && time.Since(start) >= j.For {
			break
		}
		rand.Read(v)
		if _, err := stmt.Exec(v); err != nil {
			return fmt.Errorf("insert %d: %w", n+1, err)
		}
		if j.Report {
			fmt.Fprintf(w, "commit %d %d %x\n", n+1, time.Now().UnixNano(), v[:markerLen])
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(w, "done %d %d\n", n, time.Since(start).Nanoseconds())
	return w.Flush()
}

// update rewrites Rows distinct random rows among ids 1..MaxID.
func (j appJob) update(db *sql.DB) error {
	if int64(j.Rows) > j.MaxID {
		return fmt.Errorf("cannot update %d distinct rows of %d", j.Rows, j.MaxID)
	}
	ids := map[int64]bool{}
	for len(ids) < j.Rows {
		ids[mrand.Int64N(j.MaxID)+1] = true
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for id := range ids {
		res, err := tx.Exec("UPDATE t SET v = randomblob(?) WHERE id = ?", wideRow, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("row %d is missing", id)
		}
	}
	return tx.Commit()
}

// build creates a database of about size bytes, one wide row of random
// bytes per page, without a log (quickly), then puts it in WAL mode.
func build(path string, size int64, out io.Writer) error {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	for _, q := range []string{"PRAGMA page_size=4096", "PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"} {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	rows := size / 4096
	for done := int64(0); done < rows; {
		n := min(rows-done, 10000)
		if _, err := db.Exec(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < ?)
			INSERT INTO t(v) SELECT randomblob(?) FROM c`, n, wideRow); err != nil {
			return err
		}
		done += n
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode=WAL").Scan(&mode); err != nil || mode != "wal" {
		return fmt.Errorf("switch to WAL: %q %v", mode, err)
	}
	_, err = fmt.Fprintf(out, "done %d\n", rows)
	return err
}

// app is a running application process.
type app struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	lines  chan string
	done   chan error
}

// startApp starts the application on job. Every line it prints goes to
// lines, which is closed when the process ends; done then says how.
func startApp(ctx context.Context, job appJob) (*app, error) {
	return startSelf(ctx, appEnv, job, "application "+job.Do)
}

// startSelf starts this test binary again as a child that does job,
// handed over in the environment variable env, and names it what in its
// errors.
func startSelf(ctx context.Context, env string, job any, what string) (*app, error) {
	data, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	a := &app{lines: make(chan string, 1024), done: make(chan error, 1)}
	a.cmd = exec.CommandContext(ctx, os.Args[0])
	a.cmd.Env = append(os.Environ(), env+"="+string(data))
	a.cmd.Stderr = &a.stderr
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			a.lines <- s.Text()
		}
		close(a.lines)
		err := a.cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%s: %w: %s", what, err, strings.TrimSpace(a.stderr.String()))
		}
		a.done <- err
	}()
	return a, nil
}

// runApp runs job to its end and returns its last line.
func runApp(tb testing.TB, job appJob) string {
	tb.Helper()
	a, err := startApp(context.Background(), job)
	if err != nil {
		tb.Fatal(err)
	}
	var last string
	for l := range a.lines {
		last = l
	}
	if err := <-a.done; err != nil {
		tb.Fatal(err)
	}
	return last
}

// parseCommit parses a "commit SEQ UNIXNANO MARKER" line.
func parseCommit(l string) (commitLine, error) {
	var c commitLine
	var ns int64
	var m string
	if _, err := fmt.Sscanf(l, "commit %d %d %s", &c.seq, &ns, &m); err != nil {
		return c, fmt.Errorf("application line %q: %w", l, err)
	}
	c.at = time.Unix(0, ns)
	var err error
	c.marker, err = hex.DecodeString(m)
	return c, err
}

// parseDone parses the "done COUNT NANOSECONDS" line of an insert job.
func parseDone(l string) (int, time.Duration, error) {
	var n int
	var ns int64
	if _, err := fmt.Sscanf(l, "done %d %d", &n, &ns); err != nil {
		return 0, 0, errors.Join(fmt.Errorf("application's last line %q", l), err)
	}
	return n, time.Duration(ns), nil
}
