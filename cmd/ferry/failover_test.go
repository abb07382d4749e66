package main

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/testenv"
)

// appScript is the application of the failover tests: it inserts rows
// numbered on from the largest in its database, and after each insert
// asks 'ferry sync' whether it is durable, recording the number of every
// row ferry acknowledged. A row it recorded must survive any failover.
const appScript = `#!/bin/sh
# With a trap, the shell runs it once the command in flight has finished,
# rather than dying at once and leaving a sqlite3 to commit after it.
trap 'exit 143' TERM INT
db=$1; acked=$2; ferry=$3
i=$(sqlite3 -cmd ".timeout 5000" "$db" "SELECT coalesce(max(v), 0) FROM t") || exit 1
while :; do
	i=$((i+1))
	sqlite3 -cmd ".timeout 5000" "$db" "INSERT INTO t (v) VALUES ($i)" || exit 1
	if "$ferry" sync -timeout 20s "$db" >/dev/null 2>&1; then echo "$i" >> "$acked"; fi
	sleep 0.05
done
`

// site is one machine of a failover test: a directory with the database,
// the application's record of acknowledged rows, and the ferry process
// tree running there.
type site struct {
	dir, db, acked string
	proc           *groupProc
}

func newSite(t testing.TB, name string) *site {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &site{dir: dir, db: filepath.Join(dir, "app.db"), acked: filepath.Join(dir, "acked")}
}

// app is the -exec command that runs appScript on the site's database.
func (s *site) app(t testing.TB, bin string) string {
	t.Helper()
	script := filepath.Join(s.dir, "app.sh")
	if err := os.WriteFile(script, []byte(appScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("/bin/sh %s %s %s %s", script, s.db, s.acked, bin)
}

// ackedRows returns the rows the site's application saw acknowledged.
func (s *site) ackedRows(t testing.TB) []int {
	t.Helper()
	b, err := os.ReadFile(s.acked)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var rows []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %q", s.acked, f)
		}
		rows = append(rows, n)
	}
	return rows
}

// rowsIn returns the rows of a database.
func rowsIn(t testing.TB, db string) map[int]bool {
	t.Helper()
	out, err := exec.Command("sqlite3", "-readonly", "-cmd", ".timeout 5000", db, "SELECT v FROM t").CombinedOutput()
	if err != nil {
		t.Fatalf("read the rows of %s: %v: %s", db, err, out)
	}
	rows := map[int]bool{}
	for _, f := range strings.Fields(string(out)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: row %q", db, f)
		}
		rows[n] = true
	}
	return rows
}

// groupProc is a ferry process in a process group of its own, with its
// application: the tree a kill -9 of a machine takes down.
type groupProc struct {
	cmd  *exec.Cmd
	out  testenv.LogBuffer
	done chan struct{}
	err  error
}

func startGroup(t testing.TB, bin, ready string, args ...string) *groupProc {
	t.Helper()
	p := &groupProc{done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-log-level", "info"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	waitFor(t, 60*time.Second, fmt.Sprintf("%v to log %q", args, ready), func() bool {
		select {
		case <-p.done:
			t.Fatalf("%v exited: %v\n%s", args, p.err, p.out.String())
		default:
		}
		return strings.Contains(p.out.String(), ready)
	})
	return p
}

// kill sends SIGKILL to the whole group and waits for ferry to be gone.
func (p *groupProc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM to ferry alone, which stops its application and
// flushes, and waits for it.
func (p *groupProc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("ferry did not stop within 2 minutes of SIGTERM:\n%s", p.out.String())
	}
}

func (p *groupProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// newPrimaryDB creates the application's database in WAL mode.
func newPrimaryDB(t testing.TB, path string) {
	t.Helper()
	out, err := exec.Command("sqlite3", path, "PRAGMA journal_mode=WAL; CREATE TABLE t (v INTEGER PRIMARY KEY);").CombinedOutput()
	if err != nil {
		t.Fatalf("create %s: %v: %s", path, err, out)
	}
}

func replicaURLAt(bucket, endpoint string) string {
	return fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", bucket, url.QueryEscape(endpoint))
}

const failoverTTL = 5 * time.Second

// TestStandbyTakesOverFromAKilledPrimary runs a primary with a lease and
// its application on one site and a standby on another, each its own
// process tree and directory, both on the real S3 server. kill -9 of the
// primary's tree: the standby must promote within the lease's TTL and 5
// seconds, hold every row the application saw acknowledged, and run its
// own application, whose writes a later restore from the bucket returns
// exactly.
func TestStandbyTakesOverFromAKilledPrimary(t *testing.T) {
	needSQLite3(t)
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	replica := replicaURLAt(testenv.Bucket(t, srv), srv.Endpoint)
	bin := ferryBinary(t)
	a, b := newSite(t, "primary"), newSite(t, "standby")
	newPrimaryDB(t, a.db)

	a.proc = startGroup(t, bin, "ferry is replicating", "replicate", "-lease", failoverTTL.String(), "-exec", a.app(t, bin), a.db, replica)
	waitFor(t, 60*time.Second, "the primary's application to see 20 rows acknowledged", func() bool { return len(a.ackedRows(t)) >= 20 })
	addr := freeAddr(t)
	b.proc = startGroup(t, bin, "ferry is following", "follow", "-standby", "-lease", failoverTTL.String(), "-interval", "200ms", "-addr", addr, "-exec", b.app(t, bin), replica, b.db)
	waitFor(t, 60*time.Second, "20 more rows acknowledged on the primary", func() bool { return len(a.ackedRows(t)) >= 40 })
	if st := get(t, "http://"+addr+"/status"); !strings.Contains(st, `"applied_txid"`) {
		t.Fatalf("the standby's /status is not a follower's: %s", st)
	}

	killed := time.Now()
	a.proc.kill()
	acked := a.ackedRows(t)
	waitFor(t, failoverTTL+30*time.Second, "the standby to promote itself", func() bool {
		if b.proc.exited() {
			t.Fatalf("the standby exited: %v\n%s", b.proc.err, b.proc.out.String())
		}
		return strings.Contains(b.proc.out.String(), "promoted: replicating the database as the primary")
	})
	took := time.Since(killed)
	t.Logf("promoted %s after the kill (lease TTL %s)", took.Round(time.Millisecond), failoverTTL)
	if took > failoverTTL+5*time.Second {
		t.Errorf("the standby took %s to promote; want at most the TTL %s and 5s", took, failoverTTL)
	}
	waitFor(t, 60*time.Second, "the standby's application to see 20 rows acknowledged", func() bool { return len(b.ackedRows(t)) >= 20 })
	// The promoted daemon serves the standby's address, as a primary.
	if st := get(t, "http://"+addr+"/status"); !strings.Contains(st, `"dbs"`) || !strings.Contains(st, b.db) {
		t.Fatalf("after the promotion /status is not the primary's: %s", st)
	}
	if code, body := healthz(t, addr); code != 200 {
		t.Fatalf("after the promotion /healthz answers %d: %s", code, body)
	}
	have := rowsIn(t, b.db)
	for _, r := range acked {
		if !have[r] {
			t.Fatalf("row %d was acknowledged to the primary's application and is not in the promoted database", r)
		}
	}
	if strings.Contains(b.proc.out.String(), "snapshot stored") {
		t.Errorf("the promotion uploaded a snapshot; the history should have gone on without one:\n%s", b.proc.out.String())
	}
	b.proc.stop(t)
	if b.proc.err != nil && !strings.Contains(b.proc.err.Error(), "signal") && !strings.Contains(b.proc.err.Error(), "exit status 143") {
		t.Logf("the standby exited with %v", b.proc.err)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, replica); r.code != 0 {
		t.Fatalf("restore after the failover: %s", r.stderr)
	}
	integrityOK(t, out)
	if got, want := sha3sum(t, out), sha3sum(t, b.db); got != want {
		r := runBin(t, bin, "txids", replica)
		t.Logf("txids: %s %s", r.stdout, r.stderr)
		for _, db := range []string{out, b.db} {
			o, _ := exec.Command("sqlite3", db, "select count(*), min(rowid), max(rowid) from t; pragma page_count;").CombinedOutput()
			t.Logf("%s: %s", db, o)
		}
		t.Fatalf("the restore after the failover has hash %s, the promoted database %s\n%s", got, want, b.proc.out.String())
	}
	if r := runBin(t, bin, "verify", "-deep", replica); r.code != 0 {
		t.Fatalf("verify -deep after the failover: %s %s", r.stdout, r.stderr)
	}
}

// TestPartitionedPrimaryStops cuts the primary from the store for longer
// than its lease's TTL: the standby promotes, and when the store answers
// the old primary again it must stop, with its application, exiting
// non-zero and writing nothing; the bucket's history stays one chain that
// restores to the new primary's database.
func TestPartitionedPrimaryStops(t *testing.T) {
	needSQLite3(t)
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bucket := testenv.Bucket(t, srv)
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	viaProxy, direct := replicaURLAt(bucket, proxy.URL()), replicaURLAt(bucket, srv.Endpoint)
	bin := ferryBinary(t)
	a, b := newSite(t, "primary"), newSite(t, "standby")
	newPrimaryDB(t, a.db)

	a.proc = startGroup(t, bin, "ferry is replicating", "replicate", "-lease", failoverTTL.String(), "-exec", a.app(t, bin), a.db, viaProxy)
	waitFor(t, 60*time.Second, "the primary's application to see 20 rows acknowledged", func() bool { return len(a.ackedRows(t)) >= 20 })
	b.proc = startGroup(t, bin, "ferry is following", "follow", "-standby", "-lease", failoverTTL.String(), "-interval", "200ms", "-exec", b.app(t, bin), direct, b.db)

	proxy.Down()
	acked := a.ackedRows(t)
	waitFor(t, failoverTTL+60*time.Second, "the standby to promote itself", func() bool {
		if b.proc.exited() {
			t.Fatalf("the standby exited: %v\n%s", b.proc.err, b.proc.out.String())
		}
		return strings.Contains(b.proc.out.String(), "promoted: replicating the database as the primary")
	})
	waitFor(t, 60*time.Second, "the new primary's application to see 10 rows acknowledged", func() bool { return len(b.ackedRows(t)) >= 10 })
	if a.proc.exited() {
		t.Logf("the old primary stopped while cut off: %v", a.proc.err)
	}
	proxy.Up()
	select {
	case <-a.proc.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the old primary did not stop within 2 minutes of the store answering again:\n%s", a.proc.out.String())
	}
	if a.proc.err == nil {
		t.Fatalf("the old primary exited 0 after losing its lease:\n%s", a.proc.out.String())
	}
	if !strings.Contains(a.proc.out.String(), "lease") {
		t.Fatalf("the old primary's exit does not say it lost the lease:\n%s", a.proc.out.String())
	}
	t.Logf("old primary: %v; %s", a.proc.err, lastLine(a.proc.out.String()))

	have := rowsIn(t, b.db)
	for _, r := range acked {
		if !have[r] {
			t.Fatalf("row %d was acknowledged to the old primary's application and is not in the new primary's database", r)
		}
	}
	waitFor(t, 60*time.Second, "10 more rows on the new primary", func() bool { return len(b.ackedRows(t)) >= 20 })
	b.proc.stop(t)
	out := filepath.Join(t.TempDir(), "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, direct); r.code != 0 {
		t.Fatalf("restore after the partition: %s", r.stderr)
	}
	if got, want := sha3sum(t, out), sha3sum(t, b.db); got != want {
		t.Fatalf("the restore after the partition has hash %s, the new primary's database %s", got, want)
	}
	r := runBin(t, bin, "txids", direct)
	if r.code != 0 || strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 || !strings.HasPrefix(r.stdout, "range") {
		t.Fatalf("txids after the partition: want one range, got %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, bin, "verify", "-deep", direct); r.code != 0 {
		t.Fatalf("verify -deep after the partition: %s %s", r.stdout, r.stderr)
	}
}

// BenchmarkStandbyPromotion measures failover on the real S3 server: a
// primary ('replicate -lease 5s -exec APP') and a standby ('follow
// -standby -lease 5s -interval 1s -exec APP') on two sites, kill -9 of the
// primary's tree, then the time to the standby's promotion and to the
// first row its application sees acknowledged. The lease's TTL bounds
// the first from below: the standby must wait for the lease to lapse.
func BenchmarkStandbyPromotion(b *testing.B) {
	srv := testenv.S3(b)
	b.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	b.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bin := ferryBinary(b)
	var promote, writable time.Duration
	for b.Loop() {
		replica := replicaURLAt(testenv.Bucket(b, srv), srv.Endpoint)
		a, s := newSite(b, "primary"), newSite(b, "standby")
		newPrimaryDB(b, a.db)
		a.proc = startGroup(b, bin, "ferry is replicating", "replicate", "-lease", failoverTTL.String(), "-exec", a.app(b, bin), a.db, replica)
		waitFor(b, time.Minute, "20 rows acknowledged", func() bool { return len(a.ackedRows(b)) >= 20 })
		s.proc = startGroup(b, bin, "ferry is following", "follow", "-standby", "-lease", failoverTTL.String(), "-exec", s.app(b, bin), replica, s.db)
		waitFor(b, time.Minute, "20 more rows acknowledged", func() bool { return len(a.ackedRows(b)) >= 40 })
		killed := time.Now()
		a.proc.kill()
		waitFor(b, failoverTTL+time.Minute, "the promotion", func() bool {
			return strings.Contains(s.proc.out.String(), "promoted: replicating the database as the primary")
		})
		promote += time.Since(killed)
		waitFor(b, time.Minute, "a row acknowledged on the new primary", func() bool { return len(s.ackedRows(b)) >= 1 })
		writable += time.Since(killed)
		s.proc.kill()
	}
	n := float64(b.N)
	b.ReportMetric(promote.Seconds()/n, "promote-s")
	b.ReportMetric(writable.Seconds()/n, "first-ack-s")
	b.ReportMetric(failoverTTL.Seconds(), "lease-ttl-s")
}
