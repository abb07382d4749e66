package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestDamagedReplicaThroughCLI replicates a real database with the binary,
// then damages what the store holds the way a faulty disk, a broken
// upload or an operator would: a byte flipped in a segment, then a byte
// flipped in a snapshot chunk, a segment truncated and a chunk deleted.
// The damaged objects are written back through the store, with hashes that
// match their new bytes, so only ferry's own formats can tell. `ferry
// verify -deep` must name every damaged object; `ferry restore` must stop
// with a message naming the object and the last provable txid, and that
// txid must restore to exactly the state the application had then; a
// restore never writes a wrong database.
func TestDamagedReplicaThroughCLI(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	for name, newURL := range replicaKinds {
		t.Run(name, func(t *testing.T) { damagedReplica(t, newURL(t), false) })
	}
	// The same damage done to the ciphertext of an encrypted replica is
	// found the same way: authentication fails where a checksum would.
	t.Run("encrypted", func(t *testing.T) { damagedReplica(t, replicaKinds["s3"](t), true) })
}

func damagedReplica(t *testing.T, url string, encrypted bool) {
	bin := ferryBinary(t)
	dir := t.TempDir()
	var keyArgs []string
	var ring *seal.Ring
	if encrypted {
		keyFile := filepath.Join(dir, "key")
		if r := runBin(t, bin, "keygen", "-o", keyFile); r.code != 0 {
			t.Fatalf("keygen: %s", r.stderr)
		}
		keyArgs = []string{"-key-file", keyFile}
		k, err := seal.LoadKeyFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if ring, err = seal.NewRing(k); err != nil {
			t.Fatal(err)
		}
	}
	// run runs a command that reads the replica, with its key.
	run := func(args ...string) binResult {
		t.Helper()
		return runBin(t, bin, append(append([]string{args[0]}, keyArgs...), args[1:]...)...)
	}
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, blob BLOB)")
	// Blobs spanning several 64 KiB chunks, so that the snapshot has many.
	mustExec(t, db, "INSERT INTO notes (body, blob) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 4) SELECT 'seed', randomblob(200000) FROM n")

	repl := startReplicate(t, bin, dbPath, url, keyArgs...)

	// hashes[n] is sqlite3's hash of the database holding n rows: each
	// round of commits ends with a sync, so each lands in its own segments.
	hashes := map[int]string{}
	for round := range 8 {
		for i := range 5 {
			mustExec(t, db, "INSERT INTO notes (body, blob) VALUES (?, randomblob(?))", fmt.Sprintf("round %d note %d", round, i), 500+round*300)
			var n int
			if err := db.QueryRow("SELECT count(*) FROM notes").Scan(&n); err != nil {
				t.Fatal(err)
			}
			hashes[n] = sha3sum(t, dbPath)
		}
		if r := runBin(t, bin, "sync", "-timeout", "60s", dbPath); r.code != 0 {
			t.Fatalf("sync: %s %s (daemon: %s)", r.stdout, r.stderr, repl.stderr.String())
		}
	}
	repl.stop()

	parsed, err := config.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	store, err := target.Open(context.Background(), config.Replica{Target: parsed, Keys: ring}, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Damage goes to the bytes the store holds: for an encrypted replica,
	// the ciphertext.
	raw := seal.Raw(store)
	ctx := context.Background()
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Segments) < 6 || len(cat.Snapshots) == 0 {
		t.Fatalf("want at least 6 segments and a snapshot to damage, have %d and %d", len(cat.Segments), len(cat.Snapshots))
	}
	if r := run("verify", "-deep", url); r.code != 0 {
		t.Fatalf("verify of the intact replica: %s %s", r.stdout, r.stderr)
	}

	// First, one flipped byte in the fourth segment: the states before it
	// are still provable.
	flippedSeg := cat.Segments[3].Key
	rewrite(t, raw, flippedSeg, func(b []byte) []byte { b[len(b)*2/3] ^= 0x10; return b })
	r := run("verify", "-deep", url)
	if r.code == 0 || !strings.Contains(r.stdout, flippedSeg) {
		t.Fatalf("verify -deep did not name the flipped segment %s: %d %s %s", flippedSeg, r.code, r.stdout, r.stderr)
	}
	out := filepath.Join(dir, "latest.db")
	r = run("restore", "-o", out, url)
	if r.code == 0 || !strings.Contains(r.stderr, flippedSeg) {
		t.Fatalf("restore over a flipped segment: exit %d, stderr %q; want a failure naming %s", r.code, r.stderr, flippedSeg)
	}
	noRestoreLeft(t, dir, out)
	m := regexp.MustCompile(`ferry restore -txid (\d+)`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("restore's message does not say which txid is still provable: %q", r.stderr)
	}
	t.Logf("restore stopped: %s", strings.TrimSpace(r.stderr))
	good, _ := strconv.ParseUint(m[1], 10, 64)
	if good < cat.Segments[3].First-1 || good >= cat.Segments[3].Last {
		t.Fatalf("restore says txid %d is the last provable one; the damaged segment holds %d-%d", good, cat.Segments[3].First, cat.Segments[3].Last)
	}
	r = run("restore", "-txid", m[1], "-o", out, url)
	if r.code != 0 {
		t.Fatalf("restore -txid %s, the state restore said was provable: %s", m[1], r.stderr)
	}
	integrityOK(t, out)
	got := sha3sum(t, out)
	if n := rowCount(t, out); hashes[n] != got {
		t.Fatalf("restore -txid %s holds %d rows with hash %s; the source had %s at %d rows", m[1], n, got, hashes[n], n)
	}
	os.Remove(out)

	// Then the rest: a byte flipped in a chunk in its pack, a truncated
	// segment, and then the pack deleted.
	man, err := snapshot.Load(ctx, store, cat.Snapshots[len(cat.Snapshots)-1].TXID)
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Chunks) < 8 {
		t.Fatalf("the snapshot has %d chunks; want at least 8", len(man.Chunks))
	}
	loc := man.Locs[2]
	flippedPack := man.PackKey(loc.Pack)
	cutSeg := cat.Segments[5].Key
	rewrite(t, raw, flippedPack, func(b []byte) []byte {
		at := int(loc.Offset + loc.Length/2)
		if encrypted {
			at = len(b) / 2 // ciphertext: somewhere in the pack
		}
		b[at] ^= 0x01
		return b
	})
	rewrite(t, raw, cutSeg, func(b []byte) []byte { return b[:len(b)/2] })
	r = run("verify", "-deep", url)
	if r.code == 0 {
		t.Fatalf("verify -deep passed a damaged replica: %s", r.stdout)
	}
	for _, key := range []string{flippedSeg, flippedPack, cutSeg} {
		if !strings.Contains(r.stdout, key) {
			t.Errorf("verify -deep did not name %s:\n%s", key, r.stdout)
		}
	}
	r = run("restore", "-o", out, url)
	if r.code == 0 {
		t.Fatalf("restore from a replica whose only snapshot is damaged succeeded: %s", r.stdout)
	}
	// Plain, the damaged change sets still list and the restore meets
	// the damaged pack first; encrypted, a damaged change set's header
	// does not open, so the plan stops at it before any pack is read.
	named := []string{flippedPack}
	if encrypted {
		named = append(named, flippedSeg, cutSeg)
	}
	if !slices.ContainsFunc(named, func(k string) bool { return strings.Contains(r.stderr, k) }) {
		t.Fatalf("restore's message names no damaged object of %v: %q", named, r.stderr)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("restore's error is not one line: %q", r.stderr)
	}
	if err := store.Delete(ctx, flippedPack); err != nil {
		t.Fatal(err)
	}
	if r := run("verify", url); r.code == 0 || !strings.Contains(r.stdout, flippedPack) {
		t.Errorf("verify (shallow) did not name the deleted pack %s: %d %s", flippedPack, r.code, r.stdout)
	}
	noRestoreLeft(t, dir, out)
	t.Logf("restore refused: %s", strings.TrimSpace(r.stderr))
}

// rewrite replaces the object at key with change(its bytes), through the
// store, so the store's own checksum matches the damaged bytes.
func rewrite(t *testing.T, store objstore.Store, key string, change func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	rc, _, err := store.Get(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, key, bytes.NewReader(change(buf.Bytes())), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// noRestoreLeft fails unless a failed restore left nothing behind: no
// output and no temporary file beside it.
func noRestoreLeft(t *testing.T, dir, out string) {
	t.Helper()
	if _, err := os.Lstat(out); err == nil {
		t.Fatalf("a failed restore left %s", out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".ferry-") {
			t.Fatalf("a failed restore left %s", e.Name())
		}
	}
}

func rowCount(t *testing.T, db string) int {
	t.Helper()
	out, err := exec.Command("sqlite3", "-readonly", db, "SELECT count(*) FROM notes").CombinedOutput()
	if err != nil {
		t.Fatalf("count rows of %s: %v: %s", db, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
