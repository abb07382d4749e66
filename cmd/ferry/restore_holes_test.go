package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// builtReplica is a replica that `ferry replicate` wrote, with sqlite3's
// hash of the source database at each txid it holds.
type builtReplica struct {
	url    string
	dbPath string
	hashes map[uint64]string
	last   uint64
	repl   *replicateProc
}

// buildReplica runs `ferry replicate dbPath url` beside an application
// that commits n times, syncing after each commit so that each lands in a
// change set of its own, then stops the daemon unless keep is set.
func buildReplica(t *testing.T, bin, url string, n int, keep bool) builtReplica {
	t.Helper()
	b := builtReplica{url: url, dbPath: filepath.Join(t.TempDir(), "app.db"), hashes: map[uint64]string{}}
	db := openAppDB(t, b.dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, blob BLOB)")
	repl := startReplicate(t, bin, b.dbPath, url)
	b.repl = repl
	record := func() {
		t.Helper()
		if r := runBin(t, bin, "sync", "-timeout", "60s", b.dbPath); r.code != 0 {
			t.Fatalf("sync: %s %s (daemon: %s)", r.stdout, r.stderr, repl.stderr.String())
		}
		var st daemon.StatusReport
		r := runBin(t, bin, "status", "-json", b.dbPath)
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.DBs) != 1 {
			t.Fatalf("status: %d %q %q", r.code, r.stdout, r.stderr)
		}
		b.last = st.DBs[0].TXID
		b.hashes[b.last] = sha3sum(t, b.dbPath)
	}
	record()
	for i := range n {
		mustExec(t, db, "INSERT INTO notes (body, blob) VALUES (?, randomblob(?))", fmt.Sprintf("note %d", i), 300+200*i)
		record()
	}
	if !keep {
		repl.stop()
	}
	return b
}

func (b builtReplica) store(t *testing.T) objstore.Store {
	t.Helper()
	store, err := target.OpenURL(context.Background(), b.url, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func (b builtReplica) catalog(t *testing.T) restore.Catalog {
	t.Helper()
	cat, err := restore.ReadCatalog(context.Background(), b.store(t))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// restoreExactly restores txid (0: the latest) and checks the result with
// sqlite3 against the source at that txid.
func (b builtReplica) restoreExactly(t *testing.T, bin string, txid uint64, want string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	args := []string{"restore", "-o", out, b.url}
	if txid != 0 {
		args = []string{"restore", "-txid", fmt.Sprint(txid), "-o", out, b.url}
	}
	if r := runBin(t, bin, args...); r.code != 0 {
		t.Fatalf("%v: %s", args, r.stderr)
	}
	integrityOK(t, out)
	if got := sha3sum(t, out); got != want {
		t.Fatalf("%v restored hash %s, the source had %s", args, got, want)
	}
}

// lastLine is the last line a command wrote on stderr, where a failure's
// one line is.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestHoleInReplicaThroughCLI deletes one change set from the middle of
// a replica that `ferry replicate` wrote. The change sets past it can no
// longer be reached: `ferry restore` of the latest state must fail with
// one line naming the hole and the last provable txid (which must then
// restore exactly), `ferry txids` must show the hole and what lies past
// it, and `ferry verify`, shallow and deep, must fail. A snapshot past the
// hole, as ferry writes when it re-establishes a chain, turns the hole
// into a recorded gap: everything passes again and the latest state
// restores. Deleting that snapshot, then the first, breaks it again; an
// empty replica or a mistyped prefix fails verification too.
func TestHoleInReplicaThroughCLI(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	for name, newURL := range replicaKinds {
		t.Run(name, func(t *testing.T) { holeInReplica(t, newURL(t)) })
	}
}

func holeInReplica(t *testing.T, url string) {
	bin := ferryBinary(t)
	b := buildReplica(t, bin, url, 10, false)
	ctx := context.Background()
	store := b.store(t)
	cat := b.catalog(t)
	if len(cat.Segments) < 6 || len(cat.Snapshots) != 1 {
		t.Fatalf("want at least 6 change sets and one snapshot, have %d and %d", len(cat.Segments), len(cat.Snapshots))
	}
	if r := runBin(t, bin, "verify", "-deep", url); r.code != 0 {
		t.Fatalf("verify of the intact replica: %s %s", r.stdout, r.stderr)
	}
	// The state past the hole, for the snapshot that later re-establishes
	// the chain there.
	beyondTXID := cat.Segments[3].Last
	beyond := filepath.Join(t.TempDir(), "beyond.db")
	if r := runBin(t, bin, "restore", "-txid", fmt.Sprint(beyondTXID), "-o", beyond, url); r.code != 0 {
		t.Fatalf("restore -txid %d: %s", beyondTXID, r.stderr)
	}

	hole := cat.Segments[1]
	proven := hole.First - 1
	if err := store.Delete(ctx, hole.Key); err != nil {
		t.Fatal(err)
	}
	holeText := fmt.Sprintf("txids %d-%d are missing", hole.First, hole.Last)
	if hole.First == hole.Last {
		holeText = fmt.Sprintf("txid %d is missing", hole.First)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "latest.db")
	r := runBin(t, bin, "restore", "-o", out, url)
	if r.code == 0 {
		t.Fatalf("restore of the latest state across a hole at %s succeeded: %s", hole.Key, r.stdout)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, holeText) ||
		!strings.Contains(r.stderr, fmt.Sprintf("up to txid %d", b.last)) || !strings.Contains(r.stderr, fmt.Sprintf("ferry restore -txid %d'", proven)) {
		t.Fatalf("restore across the hole said %q; want one line with %q, the newest txid %d and the last provable txid %d", r.stderr, holeText, b.last, proven)
	}
	t.Logf("restore refused: %s", strings.TrimSpace(r.stderr))
	noRestoreLeft(t, dir, out)
	b.restoreExactly(t, bin, proven, b.hashes[proven])
	if r := runBin(t, bin, "restore", "-txid", fmt.Sprint(hole.Last+1), "-o", out, url); r.code == 0 || !strings.Contains(r.stderr, holeText) {
		t.Fatalf("restore -txid %d, past the hole: exit %d, %q", hole.Last+1, r.code, r.stderr)
	}
	noRestoreLeft(t, dir, out)

	r = runBin(t, bin, "txids", url)
	for _, want := range []string{
		fmt.Sprintf("range    %d-%d", cat.Snapshots[0].TXID, proven),
		fmt.Sprintf("missing  %d-%d", hole.First, hole.Last),
		fmt.Sprintf("stranded %d-%d", hole.Last+1, b.last),
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("txids does not show %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	var spans []struct {
		Kind        string `json:"kind"`
		First, Last uint64
	}
	r = runBin(t, bin, "txids", "-json", url)
	if err := json.Unmarshal([]byte(r.stdout), &spans); err != nil || len(spans) != 3 || spans[1].Kind != "missing" || spans[2].Kind != "stranded" {
		t.Errorf("txids -json: %v %s", err, r.stdout)
	}

	for _, deep := range []bool{false, true} {
		args := []string{"verify", url}
		if deep {
			args = []string{"verify", "-deep", url}
		}
		r := runBin(t, bin, args...)
		if r.code == 0 || !strings.Contains(r.stdout, holeText) || !strings.Contains(lastLine(r.stderr), fmt.Sprintf("cannot restore txid %d", b.last)) {
			t.Errorf("%v across the hole: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		for _, line := range strings.Split(r.stdout, "\n") {
			var first, last uint64
			if _, err := fmt.Sscanf(line, "restorable txids %d-%d", &first, &last); err == nil && last > proven {
				t.Errorf("%v reports txids %d-%d as restorable; only up to %d are:\n%s", args, first, last, proven, r.stdout)
			}
		}
	}

	// A snapshot past the hole re-establishes the chain, as ferry does
	// after dropping change sets: a recorded gap, not damage.
	writeSnapshot(t, store, beyond, beyondTXID)
	if r := runBin(t, bin, "verify", "-deep", url); r.code != 0 {
		t.Fatalf("verify with the gap recorded by a snapshot: %s %s", r.stdout, r.stderr)
	}
	if r := runBin(t, bin, "txids", url); !strings.Contains(r.stdout, fmt.Sprintf("gap      %d-%d", hole.First, beyondTXID-1)) || strings.Contains(r.stdout, "missing") {
		t.Errorf("txids with a recorded gap:\n%s%s", r.stdout, r.stderr)
	}
	b.restoreExactly(t, bin, 0, b.hashes[b.last])

	// Without that snapshot the hole is damage again; without the first
	// one too, change sets remain with no snapshot at all.
	if err := store.Delete(ctx, snapshot.ManifestKey(beyondTXID)); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, bin, "verify", url); r.code == 0 || !strings.Contains(r.stdout, holeText) {
		t.Errorf("verify after the snapshot past the hole was deleted: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := store.Delete(ctx, cat.Snapshots[0].Key); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, bin, "verify", url)
	if r.code == 0 || !strings.Contains(lastLine(r.stderr), "no snapshot") {
		t.Errorf("verify of change sets without a snapshot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, bin, "restore", "-o", out, url)
	if r.code == 0 || !strings.Contains(r.stderr, "no snapshot") || !strings.Contains(r.stderr, fmt.Sprintf("up to txid %d", b.last)) {
		t.Errorf("restore of change sets without a snapshot: exit %d %q", r.code, r.stderr)
	}
	noRestoreLeft(t, dir, out)
	if r := runBin(t, bin, "txids", url); !strings.Contains(r.stdout, "stranded") {
		t.Errorf("txids of change sets without a snapshot:\n%s%s", r.stdout, r.stderr)
	}

	// Nothing there at all: an empty replica, or a mistyped prefix.
	empty := "file://" + t.TempDir()
	if strings.HasPrefix(url, "s3://") {
		empty = strings.Replace(url, "/app?", "/apq?", 1)
	}
	r = runBin(t, bin, "verify", "-deep", empty)
	if r.code == 0 || !strings.Contains(lastLine(r.stderr), "replica is empty") || !strings.Contains(lastLine(r.stderr), "no snapshot") {
		t.Errorf("verify of an empty replica %s: exit %d\n%s%s", empty, r.code, r.stdout, r.stderr)
	}
}

// writeSnapshot stores the database at path as a snapshot at txid, as
// ferry does when it starts a new chain.
func writeSnapshot(t *testing.T, store objstore.Store, path string, txid uint64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 100)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if _, _, err := snapshot.Write(context.Background(), store, f, pageSize, uint32(fi.Size()/int64(pageSize)), txid, time.Now(), snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
}
