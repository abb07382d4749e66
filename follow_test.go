package ferry_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/seal"
)

// An embedding program replicates with a lease and a key, and follows
// the replica into a read replica: a second writer is refused naming the
// holder, Status shows the lease, and the follower reaches the source's
// rows.
func TestLibraryLeaseFollowAndKeys(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	text, _, err := seal.Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.Join(dir, "replica")
	ctx := context.Background()
	r, err := ferry.Replicate(ctx, src, []string{url}, ferry.Options{Lease: 5 * time.Second, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st := r.Status()
	if len(st.Leases) != 1 || st.Leases[0].Replica != url || st.Leases[0].Lost != "" || !st.Leases[0].Expires.After(time.Now()) {
		t.Fatalf("Status leases %+v; want the one held on %s", st.Leases, url)
	}
	other := filepath.Join(dir, "other.db")
	walDB(t, other)
	if _, err := ferry.Replicate(ctx, other, []string{url}, ferry.Options{Lease: 5 * time.Second, KeyFile: key, SpoolDir: filepath.Join(dir, "spool2")}); err == nil ||
		!strings.Contains(err.Error(), "has another writer") || !strings.Contains(err.Error(), st.Leases[0].Holder) {
		t.Fatalf("a second writer on a leased replica: %v; want a refusal naming %s", err, st.Leases[0].Holder)
	}
	for range 20 {
		if _, err := db.Exec("INSERT INTO t (v) VALUES ('x')"); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := r.Sync(sctx); err != nil {
		t.Fatal(err)
	}

	fctx, stop := context.WithCancel(ctx)
	replica := filepath.Join(dir, "replica.db")
	followed := make(chan error, 1)
	go func() {
		followed <- ferry.Follow(fctx, url, replica, ferry.FollowOptions{Interval: 50 * time.Millisecond, KeyFiles: []string{key}})
	}()
	for end := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(replica); err == nil && count(t, replica) == 20 {
			break
		}
		select {
		case err := <-followed:
			t.Fatalf("Follow returned: %v", err)
		default:
		}
		if time.Now().After(end) {
			t.Fatal("the follower did not reach the source's 20 rows")
		}
	}
	stop()
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	if err := ferry.Follow(ctx, url, filepath.Join(dir, "nokey.db"), ferry.FollowOptions{}); err == nil || !strings.Contains(err.Error(), "no key was given") {
		t.Fatalf("Follow of an encrypted replica without its key: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
