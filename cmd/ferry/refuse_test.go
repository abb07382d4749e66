package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/testenv"
)

// refusingProxy stands in front of the real S3 server and, while refusing
// is set, answers every upload under a path holding its fragment (change
// sets: "/segments/") with 403 AccessDenied, as a bucket policy that
// denies that prefix would.
type refusingProxy struct {
	*httptest.Server
	refusing atomic.Bool
	refused  atomic.Int64
}

func newRefusingProxy(t *testing.T, upstream, fragment string) *refusingProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	// The director keeps the Host header the client signed, so the
	// server checks the signature against the address the client used.
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &refusingProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.refusing.Load() && r.Method == http.MethodPut && strings.Contains(r.URL.Path, fragment) {
			p.refused.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied by policy</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// TestChangeSetsRefusedForGood has the store refuse change sets with 403
// for good. The daemon must keep running, record the gap, re-establish the
// chain with a snapshot, keep the refused entry in the spool's failed
// queue for the operator, and start again without crashing on it.
func TestChangeSetsRefusedForGood(t *testing.T) {
	needSQLite3(t)
	srv := testenv.StartPrivateS3(t)
	bucket := testenv.Bucket(t, srv.S3Server)
	proxy := newRefusingProxy(t, srv.Endpoint, "/segments/")
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", bucket, proxy.URL)

	d := startDaemon(t, bin, "replicate", dbPath, url)
	for i := range 10 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("before %d", i))
	}
	syncDB(t, bin, dbPath, d)
	before := dbStatus(t, bin, dbPath)

	proxy.refusing.Store(true)
	for i := range 10 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("refused %d", i))
	}
	var st daemon.DBStatus
	// The status names the refusal once the capture has read the spool's
	// failed queue: the raw error of a refused put may show before, such
	// as that of the break marker, which the store refuses as well.
	waitFor(t, 60*time.Second, "a gap recorded, a snapshot past it and the refusal in the status", func() bool {
		st = dbStatus(t, bin, dbPath)
		tgt := st.Targets[0]
		return proxy.refused.Load() > 0 && len(st.Gaps) > 0 && !st.Gaps[0].Open && tgt.Snapshot > before.TXID &&
			strings.Contains(tgt.LastError, "refused")
	})
	tgt := st.Targets[0]
	if !strings.Contains(tgt.LastError, "refused") || !strings.Contains(tgt.LastError, "access denied") {
		t.Fatalf("status does not say the store refused a change set: %q", tgt.LastError)
	}
	if g := st.Gaps[0]; g.First != before.TXID+1 {
		t.Fatalf("gap %+v should start right after txid %d, the last the target held", g, before.TXID)
	}
	if !d.logged("target failing") {
		t.Fatalf("no WARN line for the refusal:\n%s", d.log())
	}

	// The store takes change sets again; everything from the snapshot on
	// arrives, and the daemon stops cleanly.
	proxy.refusing.Store(false)
	for i := range 10 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("after %d", i))
	}
	syncDB(t, bin, dbPath, d)
	gaps := len(dbStatus(t, bin, dbPath).Gaps)
	d.stop(t)

	spoolDir := filepath.Join(dir, ".app.db-ferry")
	fsck := runBin(t, bin, "spool", "fsck", "-json", spoolDir)
	if !strings.Contains(fsck.stdout, `"failed"`) || !strings.Contains(fsck.stdout, "AccessDenied") && !strings.Contains(fsck.stdout, "access denied") {
		t.Fatalf("the refused change set is not kept in the failed queue: %s %s", fsck.stdout, fsck.stderr)
	}
	// A retry sends files back, never a change set whose gap is recorded.
	if r := runBin(t, bin, "spool", "retry", spoolDir); r.code != 0 || !strings.Contains(r.stdout, "no files refused for good") {
		t.Fatalf("retry on a database's spool: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	failed := func(out string) int { return strings.Count(out, `"kind": "failed"`) }
	if again := runBin(t, bin, "spool", "fsck", "-json", spoolDir); failed(again.stdout) != failed(fsck.stdout) || failed(fsck.stdout) == 0 {
		t.Fatalf("retry changed a database's failed queue:\n%s\nthen\n%s", fsck.stdout, again.stdout)
	}

	// A restart finds the failed entry again: no crash, no new gap, no
	// new snapshot needed for it.
	d = startDaemon(t, bin, "replicate", dbPath, url)
	for i := range 10 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("restarted %d", i))
	}
	syncDB(t, bin, dbPath, d)
	if st := dbStatus(t, bin, dbPath); len(st.Gaps) != gaps {
		t.Fatalf("the restart recorded new gaps: %+v", st.Gaps)
	}
	if strings.Contains(d.log(), "panic") {
		t.Fatalf("the daemon panicked:\n%s", d.log())
	}
	restoreMatches(t, bin, url, dbPath, dir, srv)
	if r := runBin(t, bin, "txids", url); r.code != 0 || !strings.Contains(r.stdout, "gap") {
		t.Fatalf("txids does not show the gap: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// TestFilesRefusedForGoodAndRetried has the store refuse an inbox's files
// with 403: each waits in the spool's failed queue, /healthz turns red
// and says so, a restart warns of them. `ferry spool retry` with ferry
// stopped sends one back, and the next start uploads it; with ferry
// running, it asks the daemon, which sends the next one back and uploads
// it at once. /healthz is green again each time.
func TestFilesRefusedForGoodAndRetried(t *testing.T) {
	srv := testenv.StartPrivateS3(t)
	bucket := testenv.Bucket(t, srv.S3Server)
	proxy := newRefusingProxy(t, srv.Endpoint, "/refused-files/")
	bin := ferryBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	url := fmt.Sprintf("s3://%s/refused-files?endpoint=%s&region=us-east-1&force-path-style=true", bucket, proxy.URL)
	cfg, inbox := inboxConfig(t, dir, addr, "", url, srv)
	filesSpool := filepath.Join(dir, "spool", "files")

	proxy.refusing.Store(true)
	d := startDaemon(t, bin, "replicate", "-config", cfg)
	staged := filepath.Join(dir, "report.csv")
	if err := os.WriteFile(staged, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staged, filepath.Join(inbox, "report.csv")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "/healthz to answer 503 for the refused file", func() bool {
		code, body := healthz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "1 uploads (a file, or a bundle of small files, each) refused for good")
	})
	if st := filesStatus(t, addr); st.Refused != 1 || st.Waiting != 0 {
		t.Fatalf("/status with the file refused: %+v", st)
	}
	d.stop(t)

	d = startDaemon(t, bin, "replicate", "-config", cfg)
	waitFor(t, 30*time.Second, "a warning of the refused file at start", func() bool {
		return d.logged("files refused for good")
	})
	d.stop(t)

	proxy.refusing.Store(false)
	r := runBin(t, bin, "spool", "retry", filesSpool)
	if r.code != 0 || !strings.Contains(r.stdout, "1 uploads (a file, or a bundle of small files, each) sent back") {
		t.Fatalf("retry: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	d = startDaemon(t, bin, "replicate", "-config", cfg)
	waitFor(t, 60*time.Second, "/healthz to answer 200 once the file is shipped", func() bool {
		code, _ := healthz(t, addr)
		return code == http.StatusOK
	})

	// The same with the daemon running: a second file refused, then sent
	// back on request.
	proxy.refusing.Store(true)
	if err := os.WriteFile(staged, []byte("c,d\n3,4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staged, filepath.Join(inbox, "second.csv")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "/healthz to answer 503 for the second refused file", func() bool {
		code, body := healthz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "1 uploads (a file, or a bundle of small files, each) refused for good")
	})
	proxy.refusing.Store(false)
	r = runBin(t, bin, "spool", "retry", filesSpool)
	if r.code != 0 || !strings.Contains(r.stdout, "the running ferry sent the refused files back") {
		t.Fatalf("retry with the daemon running: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 60*time.Second, "/healthz to answer 200 once the second file is shipped", func() bool {
		code, _ := healthz(t, addr)
		return code == http.StatusOK
	})
	if !d.logged("sent back to be uploaded again, as asked") {
		t.Fatalf("the daemon did not log the retry it was asked for:\n%s", d.log())
	}
	store := s3Store(t, fmt.Sprintf("s3://%s?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint), srv)
	for key, want := range map[string]string{"refused-files/report.csv": "a,b\n1,2\n", "refused-files/second.csv": "c,d\n3,4\n"} {
		rc, _, err := store.Get(context.Background(), key, nil)
		if err != nil {
			t.Fatalf("the retried file %s is not in the bucket: %v", key, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != want {
			t.Fatalf("the retried file %s in the bucket: %q, %v", key, got, err)
		}
	}
	if fsck := runBin(t, bin, "spool", "fsck", filesSpool); fsck.code != 0 {
		t.Fatalf("the spool after the retry: %s %s", fsck.stdout, fsck.stderr)
	}
}
