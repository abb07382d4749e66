package capture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/spool"
	replicatarget "github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestStoreFaultsS3 puts Toxiproxy between ferry and a real S3 server
// while an application writes as fast as it can: first latency, then
// connections reset mid-request, then the store unreachable for 60 s
// (15 s with -short). Nothing of it may reach the application: the test
// fails if any commit took 2 s or more. During the outage the spool must
// reach its bound and drop the backlog, with the gap reported; once the
// store answers again replication must catch up through a snapshot, and
// the replica must restore exactly the live database.
func TestStoreFaultsS3(t *testing.T) {
	needCLI(t)
	outage := 60 * time.Second
	if testing.Short() {
		outage = 15 * time.Second
	}
	srv := testenv.S3(t)
	bucket := testenv.Bucket(t, srv)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	proxy := testenv.NewProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	replicaURL := func(endpoint string) string {
		return fmt.Sprintf("s3://%s/faults?endpoint=%s&region=%s&force-path-style=true", bucket, endpoint, srv.Region)
	}
	ctx := context.Background()
	viaProxy, err := replicatarget.OpenURL(ctx, replicaURL(proxy.URL()), replicatarget.Options{
		Retry:    objstore.RetryPolicy{Attempts: 3, Base: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		Timeouts: objstore.Timeouts{Op: 3 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := replicatarget.OpenURL(ctx, replicaURL(srv.Endpoint), replicatarget.Options{})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE app_meta(k INTEGER)", "INSERT INTO app_meta VALUES(0)", "CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB)")
	url := replicaURL(proxy.URL())
	o := testOptions(dir, db, map[string]objstore.Store{url: viaProxy})
	o.SyncInterval = 200 * time.Millisecond
	o.MaxSpoolBytes = 8 << 20
	o.SpoolBackoff = spool.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	r := startReplicator(t, o)
	r.sync(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	w := startKVWriter(t, db, rand.New(rand.NewPCG(seed, 5)))
	defer w.halt()

	target := func() TargetStatus { return r.Status().Targets[0] }
	// progresses fails unless the target's replicated txid moves within d.
	progresses := func(phase string, d time.Duration) {
		t.Helper()
		from := target().Replicated
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if target().Replicated > from {
				return
			}
		}
		t.Fatalf("%s: replication stood still at txid %d for %v: %+v", phase, from, d, r.Status())
	}

	proxy.Latency(300 * time.Millisecond)
	progresses("latency 300ms", 20*time.Second)
	time.Sleep(3 * time.Second)
	proxy.Clear()

	proxy.ResetPeer(20 * time.Millisecond)
	time.Sleep(5 * time.Second)
	proxy.Clear()
	progresses("after connection resets", 30*time.Second)

	proxy.Down()
	downAt := time.Now()
	var overflowed time.Duration
	for time.Since(downAt) < outage {
		st := r.Status()
		if st.SpoolBytes > o.MaxSpoolBytes {
			t.Fatalf("the spool holds %d bytes, more than its bound %d", st.SpoolBytes, o.MaxSpoolBytes)
		}
		if overflowed == 0 && !st.Targets[0].Synced {
			overflowed = time.Since(downAt)
		}
		if w.err != nil {
			t.Fatalf("application: %v", w.err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if overflowed == 0 {
		t.Fatalf("the spool never reached its bound of %d bytes in a %v outage: %+v", o.MaxSpoolBytes, outage, r.Status())
	}
	st := r.Status()
	if g := st.Gaps; len(g) == 0 || !g[len(g)-1].Open || g[len(g)-1].Last != st.TXID {
		t.Fatalf("during the outage the dropped backlog is not reported as an open gap up to txid %d: %+v", st.TXID, st.Gaps)
	}
	t.Logf("outage: spool bound reached after %v; status %+v", overflowed.Round(time.Millisecond), st)
	before := target()
	proxy.Up()

	for end := time.Now().Add(2 * time.Minute); !target().Synced || target().Snapshot <= before.Snapshot; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no snapshot re-established the chain within 2 minutes of the store's return: %+v", r.Status())
		}
	}
	progresses("after the outage", 30*time.Second)
	for _, g := range r.Status().Gaps {
		if g.Open {
			t.Fatalf("a snapshot reached the target but a gap is still open: %+v", g)
		}
	}
	w.halt()
	if w.err != nil {
		t.Fatalf("application: %v", w.err)
	}
	last := r.sync(t)
	out, res := restoreAt(t, direct, 0, dir)
	defer os.Remove(out)
	if res.TXID != last {
		t.Fatalf("the replica restores txid %d, sync said %d", res.TXID, last)
	}
	if got, live := sha3(t, out), sha3(t, db); got != live {
		t.Fatalf("after the faults the replica restores hash %s, the live database has %s", got, live)
	}
	h, k, err := dbHash(out)
	if err != nil || k != len(w.hashes)-1 || h != w.hashes[k] {
		t.Fatalf("the restore is commit %d (%v), want the last, %d", k, err, len(w.hashes)-1)
	}
	if ok, err := cli(out, "PRAGMA integrity_check"); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %s %v", ok, err)
	}
	t.Logf("%d commits; worst commit latency %v (%v during the outage); gaps %+v",
		len(w.hashes)-1, w.worst.Round(time.Microsecond), w.worstDuring(downAt, downAt.Add(outage)).Round(time.Microsecond), r.Status().Gaps)
	if w.worst >= 2*time.Second {
		t.Fatalf("a commit took %v: a store fault reached the application", w.worst)
	}
}
