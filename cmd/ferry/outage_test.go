package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestStoreOutageIsSeenAndRecovered stops the real S3 server under a
// writer for a minute. Within seconds the outage must show everywhere an
// operator looks: /healthz turns 503 naming the target, `ferry status`
// shows the error and a lag that grows with the wall clock, and a WARN
// line is logged. Once the server is back the lag falls under 2 s, an INFO
// line says the target recovered, and the replica restores exactly.
func TestStoreOutageIsSeenAndRecovered(t *testing.T) {
	needSQLite3(t)
	srv := testenv.StartPrivateS3(t)
	bucket := testenv.Bucket(t, srv.S3Server)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	addr := freeAddr(t)
	url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)
	cfg := writeConfig(t, dir, fmt.Sprintf(`addr: %s
healthz-max-lag: 3s
dbs:
  - path: %s
    replicas:
      - url: %s
        access-key-id: %s
        secret-access-key: %s
`, addr, dbPath, url, srv.AccessKey, srv.SecretKey))
	d := startDaemon(t, bin, "replicate", "-config", cfg)
	w := startWriter(t, db, 50*time.Millisecond)
	syncDB(t, bin, dbPath, d)
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Fatalf("/healthz before the outage: %d %s", code, body)
	}

	srv.Stop()
	down := time.Now()
	// /healthz turns red once the target has failed for longer than the
	// limit (3 s); the deadline only bounds a broken build.
	waitFor(t, 60*time.Second, "/healthz to answer 503 naming the target", func() bool {
		code, body := healthz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, bucket)
	})
	if !d.logged("target failing") {
		t.Fatalf("no WARN line for the failing target:\n%s", d.log())
	}
	outage := 60 * time.Second
	var lags []float64
	for time.Since(down) < outage {
		tgt := targetStatus(t, bin, dbPath)
		if tgt.LastError == "" || tgt.FailingSince.IsZero() {
			t.Fatalf("status during the outage shows no error: %+v", tgt)
		}
		// The oldest commit the target lacks was made after the last
		// successful upload, so at most a sync interval plus a poll
		// before the server went away; the lag must cover the outage.
		if min := time.Since(down).Seconds() - 2; tgt.LagSeconds < min {
			t.Fatalf("%.0fs into the outage status reports a lag of %.1fs", time.Since(down).Seconds(), tgt.LagSeconds)
		}
		lags = append(lags, tgt.LagSeconds)
		time.Sleep(5 * time.Second)
	}
	if len(lags) < 3 || lags[len(lags)-1]-lags[0] < 10 {
		t.Fatalf("the lag did not grow with the outage: %v", lags)
	}
	metrics := get(t, "http://"+addr+"/metrics")
	if !strings.Contains(metrics, "ferry_db_target_failing_seconds") || !strings.Contains(metrics, "ferry_db_lag_seconds") {
		t.Fatalf("/metrics lacks the failing and lag series")
	}

	srv.Start()
	up := time.Now()
	waitFor(t, 60*time.Second, "the lag to fall under 2s after the store came back", func() bool {
		tgt := targetStatus(t, bin, dbPath)
		return tgt.FailingSince.IsZero() && tgt.LagSeconds < 2
	})
	t.Logf("outage %s, caught up %s after the store came back; lag samples %v", up.Sub(down).Round(time.Second), time.Since(up).Round(100*time.Millisecond), lags)
	if !d.logged("target answers again") {
		t.Fatalf("no INFO line for the recovery:\n%s", d.log())
	}
	// A lag under 2 s can come a moment before the target holds every
	// txid captured when it recovered, which is when it says so.
	waitFor(t, 30*time.Second, "an INFO line saying the target caught up", func() bool { return d.logged("target caught up") })
	waitFor(t, 30*time.Second, "/healthz to answer 200 again", func() bool {
		code, _ := healthz(t, addr)
		return code == http.StatusOK
	})
	w.stop(t)
	syncDB(t, bin, dbPath, d)
	restoreMatches(t, bin, url, dbPath, dir, srv)
	if n := w.rows.Load(); n < 100 {
		t.Fatalf("the writer committed only %d rows", n)
	}
}

// TestStartsWithTheStoreDown starts `ferry replicate` while the store is
// down, as after a reboot before the network is up: it must start, say so,
// capture into its spool, and deliver every transaction once the store
// answers. A missing bucket, by contrast, stops the start with one line.
func TestStartsWithTheStoreDown(t *testing.T) {
	needSQLite3(t)
	srv := testenv.StartPrivateS3(t)
	bucket := testenv.Bucket(t, srv.S3Server)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)

	missing := fmt.Sprintf("s3://no-such-bucket/app?endpoint=%s&region=us-east-1&force-path-style=true", srv.Endpoint)
	r := runBin(t, bin, "replicate", dbPath, missing)
	if r.code == 0 || !strings.Contains(r.stderr, "bucket does not exist") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("replicate to a missing bucket: exit %d, stderr %q", r.code, r.stderr)
	}

	// A replica with history, then a restart while the store is down:
	// the capture must go on into the spool from where it was.
	d := startDaemon(t, bin, "replicate", dbPath, url)
	for i := range 20 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("before %d", i))
	}
	syncDB(t, bin, dbPath, d)
	d.stop(t)
	srv.Stop()

	d = startDaemon(t, bin, "replicate", dbPath, url)
	if !d.logged("not reachable at start") {
		t.Fatalf("no WARN line for the unreachable store:\n%s", d.log())
	}
	for i := range 200 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("while down %d", i))
	}
	waitFor(t, 30*time.Second, "the capture to spool the writes", func() bool {
		st := dbStatus(t, bin, dbPath)
		return st.SpoolSegments > 0 && st.Targets[0].LagSeconds > 0
	})
	srv.Start()
	syncDB(t, bin, dbPath, d)
	txids := runBin(t, bin, "txids", url)
	if txids.code != 0 || strings.Contains(txids.stdout, "gap") {
		t.Fatalf("txids after the outage: %d %s %s", txids.code, txids.stdout, txids.stderr)
	}
	restoreMatches(t, bin, url, dbPath, dir, srv)
}

// restoreMatches restores the latest state of url and compares it with
// the database at dbPath by sqlite3's own hash.
func restoreMatches(t *testing.T, bin, url, dbPath, dir string, srv *testenv.PrivateS3) {
	t.Helper()
	out := filepath.Join(dir, fmt.Sprintf("restored-%d.db", time.Now().UnixNano()))
	cmd := exec.Command(bin, "restore", "-o", out, url)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v: %s", err, b)
	}
	integrityOK(t, out)
	if got, want := sha3sum(t, out), sha3sum(t, dbPath); got != want {
		t.Fatalf("restore has hash %s, the source %s", got, want)
	}
}

func needSQLite3(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// daemonProc is a running `ferry replicate` whose log the test reads while
// it runs.
type daemonProc struct {
	cmd  *exec.Cmd
	out  testenv.LogBuffer
	done chan struct{}
	err  error
}

// startDaemon runs ferry with args (at log level info) and returns once
// it says it is replicating.
func startDaemon(t *testing.T, bin string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonUntil(t, bin, "ferry is replicating", args...)
}

// startDaemonUntil runs ferry with args (at log level info) and returns
// once it has logged ready.
func startDaemonUntil(t *testing.T, bin, ready string, args ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{done: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"-log-level", "info"}, args...)...)
	d.cmd.Stderr = &d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
	})
	waitFor(t, 60*time.Second, "ferry replicate to log "+ready, func() bool {
		select {
		case <-d.done:
			t.Fatalf("ferry replicate exited at start: %v\n%s", d.err, d.log())
		default:
		}
		return d.logged(ready)
	})
	return d
}

func (d *daemonProc) log() string             { return d.out.String() }
func (d *daemonProc) logged(s string) bool    { return strings.Contains(d.log(), s) }
func (d *daemonProc) signal(s syscall.Signal) { d.cmd.Process.Signal(s) }

// stop sends SIGTERM and waits for the exit; it fails the test unless
// ferry exits 0.
func (d *daemonProc) stop(t *testing.T) {
	t.Helper()
	d.signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("ferry replicate did not stop within 2 minutes of SIGTERM:\n%s", d.log())
	}
	if d.err != nil {
		t.Fatalf("ferry replicate exited with %v:\n%s", d.err, d.log())
	}
}

// writer inserts a row every interval until stopped; any failed commit
// fails the test, since replication must never reach the application.
type writer struct {
	rows atomic.Int64
	quit chan struct{}
	done chan error
}

func startWriter(t *testing.T, db *sql.DB, every time.Duration) *writer {
	w := &writer{quit: make(chan struct{}), done: make(chan error, 1)}
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
			if _, err := db.Exec("INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("row at %s", time.Now().Format(time.RFC3339Nano))); err != nil {
				w.done <- err
				return
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

func (w *writer) stop(t *testing.T) {
	t.Helper()
	close(w.quit)
	if err := <-w.done; err != nil {
		t.Fatalf("the application's commit failed: %v", err)
	}
}

func syncDB(t *testing.T, bin, dbPath string, d *daemonProc) {
	t.Helper()
	if r := runBin(t, bin, "sync", "-timeout", "90s", dbPath); r.code != 0 {
		t.Fatalf("sync: %s %s\ndaemon log:\n%s", r.stdout, r.stderr, d.log())
	}
}

func dbStatus(t *testing.T, bin, dbPath string) daemon.DBStatus {
	t.Helper()
	r := runBin(t, bin, "status", "-json", dbPath)
	var rep daemon.StatusReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.DBs) != 1 || len(rep.DBs[0].Targets) != 1 {
		t.Fatalf("status -json: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	return rep.DBs[0]
}

func targetStatus(t *testing.T, bin, dbPath string) (tgt struct {
	LagSeconds   float64
	LastError    string
	FailingSince time.Time
}) {
	t.Helper()
	st := dbStatus(t, bin, dbPath).Targets[0]
	tgt.LagSeconds, tgt.LastError, tgt.FailingSince = st.LagSeconds, st.LastError, st.FailingSince
	return tgt
}

func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitFor polls cond until it holds; the deadline only catches a change
// that never comes.
func waitFor(t testing.TB, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", deadline, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
