package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestLeaseOneWriterPerReplica runs two ferries, each for a database of
// its own, at one replica URL, so that only the lease can keep them
// apart: the second refuses to start while the first holds the lease,
// naming it, and writes nothing; once the first has been killed and its
// lease has expired, the second takes the replica over and replicates.
func TestLeaseOneWriterPerReplica(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	db1, db2 := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	for i, p := range []string{db1, db2} {
		db := openAppDB(t, p)
		mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
		for j := range 10 * (i + 1) {
			mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("db %d note %d", i+1, j))
		}
	}
	replica := filepath.Join(dir, "replica")
	url := "file://" + replica

	d1 := startDaemon(t, bin, "replicate", "-lease", "5s", db1, url)
	syncDB(t, bin, db1, d1)
	before := fileObjects(t, replica)
	r := runBin(t, bin, "replicate", "-lease", "5s", db2, url)
	holder := fmt.Sprintf(":%d:", d1.cmd.Process.Pid)
	if r.code == 0 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "has another writer") ||
		!strings.Contains(r.stderr, holder) || !strings.Contains(r.stderr, "holds its lease until") {
		t.Fatalf("second writer: exit %d, stderr %q; want one line naming holder %s and its expiry", r.code, r.stderr, holder)
	}
	if after := fileObjects(t, replica); after != before {
		t.Fatalf("the refused writer changed the replica:\nbefore %s\nafter  %s", before, after)
	}

	// kill -9 releases nothing: the lease holds until it expires.
	d1.cmd.Process.Kill()
	<-d1.done
	d2 := startWhenLeaseFree(t, bin, "replicate", "-lease", "5s", db2, url)
	db := openAppDB(t, db2)
	mustExec(t, db, "INSERT INTO notes (body) VALUES ('after the takeover')")
	syncDB(t, bin, db2, d2)
	d2.stop(t)
	out := filepath.Join(dir, "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	integrityOK(t, out)
	if got, want := sha3sum(t, out), sha3sum(t, db2); got != want {
		t.Fatalf("the replica restores to hash %s; the second writer's database has %s", got, want)
	}
}

// TestLeaseLostStopsTheWriter pauses a ferry (SIGSTOP, as a stalled VM
// would) until its lease on a real S3 replica expires and a second ferry
// takes the replica over. Revived, with commits of its own waiting to go
// out, the first must stop with an error naming the new holder and write
// nothing; the replica then verifies and restores to the second writer's
// database.
func TestLeaseLostStopsTheWriter(t *testing.T) {
	needSQLite3(t)
	srv := testenv.S3(t)
	bucket := testenv.Bucket(t, srv)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bin := ferryBinary(t)
	dir := t.TempDir()
	db1, db2 := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	for _, p := range []string{db1, db2} {
		mustExec(t, openAppDB(t, p), "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	}
	url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)

	d1 := startDaemon(t, bin, "replicate", "-lease", "3s", db1, url)
	syncDB(t, bin, db1, d1)
	d1.signal(syscall.SIGSTOP)
	app1 := openAppDB(t, db1)
	for i := range 20 {
		mustExec(t, app1, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("while paused %d", i))
	}

	d2 := startWhenLeaseFree(t, bin, "replicate", "-lease", "3s", db2, url)
	app2 := openAppDB(t, db2)
	for i := range 5 {
		mustExec(t, app2, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("second writer %d", i))
	}
	syncDB(t, bin, db2, d2)
	// Killed rather than stopped, so that its lease stays in place for
	// the first to find, and nothing else writes while the first runs.
	holder := fmt.Sprintf(":%d:", d2.cmd.Process.Pid)
	d2.cmd.Process.Kill()
	<-d2.done

	st, err := s3store.New(context.Background(), s3store.Config{Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region,
		ForcePathStyle: true, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	list := func() string {
		var b strings.Builder
		for info, err := range st.List(context.Background(), "") {
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %d %s\n", info.Key, info.Size, info.ETag)
		}
		return b.String()
	}
	before := list()
	d1.signal(syscall.SIGCONT)
	select {
	case <-d1.done:
	case <-time.After(time.Minute):
		t.Fatalf("the writer that lost its lease is still running:\n%s", d1.log())
	}
	if d1.err == nil || !d1.logged("stopped writing") || !d1.logged(holder) {
		t.Fatalf("the writer that lost its lease exited with %v; want an error naming holder %s:\n%s", d1.err, holder, d1.log())
	}
	if after := list(); after != before {
		t.Fatalf("the writer that lost its lease wrote to the replica:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if r := runBin(t, bin, "verify", url); r.code != 0 {
		t.Fatalf("verify: %s %s", r.stdout, r.stderr)
	}
	out := filepath.Join(dir, "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	integrityOK(t, out)
	if got, want := sha3sum(t, out), sha3sum(t, db2); got != want {
		t.Fatalf("the replica restores to hash %s; the second writer's database has %s", got, want)
	}
}

// startWhenLeaseFree starts `ferry replicate` with args, again each time
// it refuses because another writer holds the lease, until it replicates.
func startWhenLeaseFree(t *testing.T, bin string, args ...string) *daemonProc {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
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
		exited := false
		waitFor(t, time.Minute, "ferry replicate to start or refuse", func() bool {
			select {
			case <-d.done:
				exited = true
			default:
			}
			return exited || d.logged("ferry is replicating")
		})
		if !exited {
			return d
		}
		if !d.logged("has another writer") || time.Now().After(deadline) {
			t.Fatalf("ferry replicate exited at start: %v\n%s", d.err, d.log())
		}
		// The holder's lease runs out at the time its message gives; a
		// retry a few times a second takes it over soon after.
		time.Sleep(250 * time.Millisecond)
	}
}

// fileObjects describes the objects of a file:// replica other than its
// leases, which their holder renews while the test looks.
func fileObjects(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasPrefix(rel, "leases"+string(filepath.Separator)) {
			return nil
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %d %d", rel, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
