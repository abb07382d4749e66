package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// filesStatus returns the files part of the daemon's GET /status.
func filesStatus(t *testing.T, addr string) daemon.FilesStatus {
	t.Helper()
	var rep daemon.StatusReport
	body := get(t, "http://"+addr+"/status")
	if err := json.Unmarshal([]byte(body), &rep); err != nil || rep.Files == nil {
		t.Fatalf("GET /status: %v, no files part in %s", err, body)
	}
	return *rep.Files
}

// s3Store opens the replica url on srv with srv's keys.
func s3Store(t *testing.T, url string, srv *testenv.PrivateS3) objstore.Store {
	t.Helper()
	tg, err := config.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	store, err := target.Open(context.Background(), config.Replica{Target: tg,
		AccessKeyID: config.NewSecret(srv.AccessKey), SecretAccessKey: config.NewSecret(srv.SecretKey)}, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// inboxConfig writes, under dir, the config of a daemon serving HTTP on
// addr with one inbox, dir/inbox (made here), that ships to url with
// srv's keys; top goes first. It returns the config's path and the
// inbox's.
func inboxConfig(t *testing.T, dir, addr, top, url string, srv *testenv.PrivateS3) (cfg, inbox string) {
	t.Helper()
	inbox = filepath.Join(dir, "inbox")
	if err := os.Mkdir(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg = writeConfig(t, dir, fmt.Sprintf(`%saddr: %s
spool: %s
files:
  - inbox: %s
    replica:
      url: %s
      access-key-id: %s
      secret-access-key: %s
`, top, addr, filepath.Join(dir, "spool"), inbox, url, srv.AccessKey, srv.SecretKey))
	return cfg, inbox
}

// TestFilesWaitingTurnHealthzRed stops the store under an inbox: a file
// that waits in the files spool longer than healthz-max-lag must turn
// /healthz red, naming the spool, and green again once it is shipped.
func TestFilesWaitingTurnHealthzRed(t *testing.T) {
	srv := testenv.StartPrivateS3(t)
	bucket := testenv.Bucket(t, srv.S3Server)
	bin := ferryBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	url := fmt.Sprintf("s3://%s/files?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)
	cfg, inbox := inboxConfig(t, dir, addr, "healthz-max-lag: 2s\n", url, srv)
	startDaemon(t, bin, "replicate", "-config", cfg)
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Fatalf("/healthz at start: %d %s", code, body)
	}
	srv.Stop()
	if err := os.WriteFile(filepath.Join(inbox, "report.csv"), []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "/healthz to answer 503 naming the files spool", func() bool {
		code, body := healthz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "files spool")
	})
	// An upload fails once the store's client has given up its own
	// retries, which takes longer than the health check.
	waitFor(t, 120*time.Second, "/status to say uploads fail, with their error, and the file waits", func() bool {
		st := filesStatus(t, addr)
		return st.Waiting == 1 && st.UploadsFailingSince != nil && st.LastError != "" && st.OldestSeconds > 0
	})
	srv.Start()
	waitFor(t, 60*time.Second, "/healthz to answer 200 once the file is shipped", func() bool {
		code, _ := healthz(t, addr)
		return code == http.StatusOK
	})
	if st := filesStatus(t, addr); st.Waiting != 0 || st.UploadsFailingSince != nil || st.LastError != "" {
		t.Fatalf("/status once the file is shipped: %+v", st)
	}
	store := s3Store(t, url, srv)
	if info, err := store.Head(context.Background(), "report.csv"); err != nil || info.Size != 8 {
		t.Fatalf("the file is not in the bucket once /healthz is green: %+v %v", info, err)
	}
}

// TestUnreadableInboxTurnsHealthzRed takes an inbox away under the
// daemon: past healthz-max-lag /healthz answers 503 naming it, and 200
// once it is back and its file shipped; the log says it once, not at
// every scan.
func TestUnreadableInboxTurnsHealthzRed(t *testing.T) {
	bin := ferryBinary(t)
	dir := t.TempDir()
	inbox := filepath.Join(dir, "inbox")
	if err := os.Mkdir(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	replica := filepath.Join(dir, "replica")
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`addr: %s
healthz-max-lag: 1s
spool: %s
files:
  - inbox: %s
    replica: file://%s
`, addr, filepath.Join(dir, "spool"), inbox, replica))
	d := startDaemon(t, bin, "replicate", "-config", cfg)
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Fatalf("/healthz at start: %d %s", code, body)
	}
	if err := os.Rename(inbox, inbox+".away"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "/healthz to answer 503 naming the inbox", func() bool {
		code, body := healthz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "inbox "+inbox) && strings.Contains(body, "cannot read")
	})
	if st := filesStatus(t, addr); len(st.Inboxes) != 1 || st.Inboxes[0].Path != inbox || st.Inboxes[0].FailingSince == nil || !strings.Contains(st.Inboxes[0].Error, "cannot read") {
		t.Fatalf("/status with the inbox gone: %+v", st.Inboxes)
	}
	if err := os.WriteFile(filepath.Join(inbox+".away", "late.txt"), []byte("late"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(inbox+".away", inbox); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "/healthz to answer 200 with the inbox back and its file shipped", func() bool {
		code, _ := healthz(t, addr)
		_, err := os.Stat(filepath.Join(replica, "late.txt"))
		return code == http.StatusOK && err == nil
	})
	if n := strings.Count(d.log(), "inbox: cannot read it"); n != 1 {
		t.Fatalf("%d warnings for the inbox gone, want 1:\n%s", n, d.log())
	}
}
