package statuspage_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
)

// TestStatusPageOfRealDaemon loads the page a running daemon serves for a
// directory of databases, and checks every row against the daemon's own
// GET /status.
func TestStatusPageOfRealDaemon(t *testing.T) {
	ctx := browser(t)
	dir, base := t.TempDir(), t.TempDir()
	const n = 40
	for i := range n {
		db, err := sql.Open("sqlite", fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)", filepath.Join(dir, fmt.Sprintf("t%02d.db", i))))
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j <= i%3; j++ {
			if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t(v); INSERT INTO t VALUES(1)"); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
	}
	os.WriteFile(filepath.Join(dir, "junk.db"), []byte("no database"), 0o644)
	cfg, err := config.Parse([]byte(fmt.Sprintf("addr: 127.0.0.1:0\ndbs:\n  - dir: %s\n    replicas: [file://%s]\n", dir, base)), "ferry.yml")
	if err != nil {
		t.Fatal(err)
	}
	dctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		done <- daemon.Run(dctx, cfg, daemon.Options{FilesSpool: filepath.Join(base, ".files"), IdleAfter: 100 * time.Millisecond,
			Ready: func(addr string) { ready <- addr }})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped at start: %v", err)
	}
	// Every database replicated, so that what /status says holds while
	// the page is read.
	resp, err := http.Post("http://"+addr+"/sync?timeout=60s", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var rep report
	get := func() {
		resp, err := http.Get("http://" + addr + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			t.Fatal(err)
		}
	}
	// Until each database is idle: a database's state is then stable.
	deadline := time.Now().Add(time.Minute)
	for get(); ; get() {
		idle := 0
		for _, db := range rep.DBs {
			if db.State == "idle" {
				idle++
			}
		}
		if idle == n && len(rep.DBs) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d databases idle after a minute", idle, len(rep.DBs))
		}
		time.Sleep(50 * time.Millisecond)
	}

	do(t, ctx, "load the page", chromedp.Navigate("http://"+addr+"/?refresh=1"))
	waitFor(t, ctx, "every row", fmt.Sprintf(`document.querySelectorAll("#rows tr").length === %d`, n))
	got := run(t, ctx, "read the rows", chromedp.Evaluate[[]row](readRows))
	want := expect(rep)
	if d := diffRows(got, want); d != "" {
		t.Fatalf("the page differs from GET /status:\n%s", d)
	}
	for _, r := range got {
		if r.State != "idle" || r.Txid == "" {
			t.Fatalf("row %+v", r)
		}
	}
}
