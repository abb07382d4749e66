package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/testenv"
)

// refusingProxy stands in front of the real S3 server and, while refusing
// is set, answers every upload of a change set with 403 AccessDenied, as a
// bucket policy that denies that prefix would.
type refusingProxy struct {
	*httptest.Server
	refusing atomic.Bool
	refused  atomic.Int64
}

func newRefusingProxy(t *testing.T, upstream string) *refusingProxy {
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
		if p.refusing.Load() && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/segments/") {
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
	proxy := newRefusingProxy(t, srv.Endpoint)
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
