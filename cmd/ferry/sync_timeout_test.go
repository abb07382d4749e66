package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/testenv"
)

// TestSyncTimeoutSaysHowFar takes the store away from a running
// `ferry replicate`, commits, and runs `ferry sync -timeout`: it must exit
// non-zero within its timeout, saying which txid the target has of how
// many, and succeed once the store is back.
func TestSyncTimeoutSaysHowFar(t *testing.T) {
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	proxy := testenv.NewProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", testenv.Bucket(t, srv), proxy.URL())
	bin := ferryBinary(t)
	dbPath := filepath.Join(t.TempDir(), "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")

	startReplicate(t, bin, dbPath, url)
	if r := runBin(t, bin, "sync", "-timeout", "60s", dbPath); r.code != 0 {
		t.Fatalf("sync with the store up: %s %s", r.stdout, r.stderr)
	}

	proxy.Down()
	mustExec(t, db, "INSERT INTO notes (body) VALUES ('while the store is down')")
	r := runBin(t, bin, "sync", "-timeout", "2s", dbPath)
	m := regexp.MustCompile(`has txid (\d+) of (\d+)`).FindStringSubmatch(r.stderr)
	if r.code == 0 || !strings.Contains(r.stderr, "not yet durable") || m == nil || m[1] == m[2] {
		t.Fatalf("sync with the store down: exit %d, stderr %q; want a failure saying how far the target got", r.code, r.stderr)
	}
	t.Logf("sync said: %s", strings.TrimSpace(r.stderr))

	proxy.Up()
	if r := runBin(t, bin, "sync", "-timeout", "60s", dbPath); r.code != 0 || !strings.Contains(r.stdout, "has txid "+m[2]+" of "+m[2]) {
		t.Fatalf("sync once the store is back: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
}
