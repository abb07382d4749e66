package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// Markers written into the database, the pushed file, the inbox file and
// the artifact. None may appear in any object of the bucket, raw or after
// zstd decompression.
var (
	textMarker = []byte("FERRY-PLAINTEXT-MARKER-7f3a9c")
	blobMarker = []byte{0x00, 0xff, 'F', 'B', 'L', 'O', 'B', 0xfe, 0x01, 0x7f, 0x80, 0x02}
)

// TestEncryptionAtRest replicates a database holding marker strings and
// binary blobs through a config with encryption, ships an inbox file,
// pushes a file and uploads an artifact with -key-file, then reads every
// object in the bucket raw: no marker is anywhere. The key restores
// exactly; no key, or another key, fails in one line and writes nothing.
// Then the key is rotated: history under both keys restores with both
// given, and with only the new key the latest state restores while a txid
// from before the rotation is refused.
func TestEncryptionAtRest(t *testing.T) {
	needSQLite3(t)
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bucket := testenv.Bucket(t, srv)
	urlOf := func(prefix string) string {
		return fmt.Sprintf("s3://%s/%s?endpoint=%s&region=us-east-1&force-path-style=true", bucket, prefix, srv.Endpoint)
	}
	dbURL, inboxURL, pushURL, artURL := urlOf("db"), urlOf("inbox"), urlOf("pushed"), urlOf("artifacts/build-1")

	bin := ferryBinary(t)
	dir := t.TempDir()
	keyA, keyB, keyC := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key"), filepath.Join(dir, "c.key")
	for _, k := range []string{keyA, keyB, keyC} {
		if r := runBin(t, bin, "keygen", "-o", k); r.code != 0 || !strings.Contains(r.stdout, "written to "+k) {
			t.Fatalf("keygen: %d %s %s", r.code, r.stdout, r.stderr)
		}
	}
	secretA := secretOf(t, keyA)

	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, blob BLOB)")
	insertMarkers := func(n int) {
		for i := range n {
			blob := bytes.Repeat(append(blobMarker, byte(i)), 40)
			mustExec(t, db, "INSERT INTO notes (body, blob) VALUES (?, ?)", fmt.Sprintf("%s row %d", textMarker, i), blob)
		}
	}
	insertMarkers(50)

	inbox := filepath.Join(dir, "inbox")
	if err := os.Mkdir(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	configWith := func(write string, readOnly ...string) string {
		enc := "{ key-file: " + write
		if len(readOnly) > 0 {
			enc += ", read-only-key-files: [" + strings.Join(readOnly, ", ") + "]"
		}
		enc += " }"
		return writeConfig(t, dir, fmt.Sprintf(`spool: %s
dbs:
  - path: %s
    replicas: [%q]
    encryption: %s
files:
  - inbox: %s
    replica: %q
    encryption: { key-file: %s }
`, filepath.Join(dir, "spool"), dbPath, dbURL, enc, inbox, inboxURL, keyA))
	}
	d := startDaemon(t, bin, "replicate", "-config", configWith(keyA))
	insertMarkers(30)
	syncDB(t, bin, dbPath, d)
	// mid is a state only key A's history holds: the rotation's snapshot
	// comes later.
	mid := dbStatus(t, bin, dbPath).TXID
	midHash := sha3sum(t, dbPath)
	insertMarkers(10)
	syncDB(t, bin, dbPath, d)
	beforeHash := sha3sum(t, dbPath)

	fileBody := append(append([]byte("report\n"), textMarker...), blobMarker...)
	if err := os.WriteFile(filepath.Join(inbox, "inbox-report.bin"), fileBody, 0o644); err != nil {
		t.Fatal(err)
	}
	pushed := filepath.Join(dir, "pushed-report.bin")
	if err := os.WriteFile(pushed, fileBody, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, bin, "push", "-key-file", keyA, "-wait", "-spool", filepath.Join(dir, "spool"), pushed, pushURL); r.code != 0 {
		t.Fatalf("push: %s %s", r.stdout, r.stderr)
	}
	artDir := filepath.Join(dir, "build")
	if err := os.MkdirAll(filepath.Join(artDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artDir, "sub", "app.bin"), fileBody, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, bin, "artifact", "upload", "-key-file", keyA, artDir, artURL); r.code != 0 {
		t.Fatalf("artifact upload: %s %s", r.stdout, r.stderr)
	}
	waitFor(t, 60*time.Second, "the inbox file to be shipped", func() bool {
		_, err := os.Stat(filepath.Join(inbox, "inbox-report.bin"))
		return os.IsNotExist(err)
	})
	d.stop(t)
	if strings.Contains(d.log(), secretA) {
		t.Fatal("the daemon logged the key")
	}

	// Every object in the bucket, raw and after any zstd frame in it is
	// decompressed: no marker.
	keys := strings.Join(scanBucket(t, bucket, srv), " ")
	for _, want := range []string{"db/snapshots/", "db/segments/", "db/packs/", "inbox/inbox-report.bin", "pushed/pushed-report.bin", "artifacts/build-1"} {
		if !strings.Contains(keys, want) {
			t.Fatalf("no object %s* in the bucket, which holds %s", want, keys)
		}
	}

	out := filepath.Join(dir, "restored.db")
	if r := runBin(t, bin, "restore", "-key-file", keyA, "-o", out, dbURL); r.code != 0 {
		t.Fatalf("restore with the key: %s", r.stderr)
	}
	integrityOK(t, out)
	if got := sha3sum(t, out); got != beforeHash {
		t.Fatalf("restore with the key has hash %s, the source %s", got, beforeHash)
	}
	os.Remove(out)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no key", nil, []string{"is encrypted", "no key was given", "give the key file"}},
		{"another key", []string{"-key-file", keyB}, []string{"the key does not match", "not one of the keys given"}},
	} {
		for _, cmd := range [][]string{{"restore", "-o", out}, {"txids"}, {"snapshots"}, {"verify", "-deep"}, {"gc", "-dry-run"}} {
			args := append(append(append([]string{}, cmd...), tc.args...), dbURL)
			r := runBin(t, bin, args...)
			if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Fatalf("%s, %v: exit %d, stderr %q; want one line and a failure", tc.name, cmd, r.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Fatalf("%s, %v: %q does not say %q", tc.name, cmd, r.stderr, w)
				}
			}
		}
		noRestoreLeft(t, dir, out)
	}
	if r := runBin(t, bin, "verify", "-deep", "-key-file", keyA, dbURL); r.code != 0 {
		t.Fatalf("verify -deep with the key: %s %s", r.stdout, r.stderr)
	}

	// The files come back with the key, and only with it. A download a
	// get killed with kill -9 left beside the output goes.
	got := filepath.Join(dir, "got.bin")
	left := filepath.Join(dir, ".got.bin.ferry-get-123")
	if err := os.WriteFile(left, []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, bin, "get", "-key-file", keyA, pushURL, "pushed-report.bin", got); r.code != 0 {
		t.Fatalf("get of the pushed file: %s", r.stderr)
	}
	sameFile(t, got, fileBody)
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("get left behind what a killed get had left: %v", err)
	}
	os.Remove(got)
	if r := runBin(t, bin, "get", "-key-file", keyA, inboxURL, "inbox-report.bin", got); r.code != 0 {
		t.Fatalf("get of the inbox file: %s", r.stderr)
	}
	sameFile(t, got, fileBody)
	os.Remove(got)
	if r := runBin(t, bin, "get", pushURL, "pushed-report.bin", got); r.code == 0 || !strings.Contains(r.stderr, "no key was given") {
		t.Fatalf("get without the key: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(got); !os.IsNotExist(err) {
		t.Fatal("a failed get left its output")
	}
	artOut := filepath.Join(dir, "art-out")
	if r := runBin(t, bin, "artifact", "download", "-key-file", keyA, artURL, artOut); r.code != 0 {
		t.Fatalf("artifact download: %s", r.stderr)
	}
	sameFile(t, filepath.Join(artOut, "sub", "app.bin"), fileBody)
	if r := runBin(t, bin, "artifact", "download", "-key-file", keyB, artURL, filepath.Join(dir, "art-b")); r.code == 0 || !strings.Contains(r.stderr, "the key does not match") {
		t.Fatalf("artifact download with another key: %d %q", r.code, r.stderr)
	}

	// A database replicated with another key, or none, onto this replica
	// is refused before anything is written.
	if r := runBin(t, bin, "replicate", "-key-file", keyB, dbPath, dbURL); r.code == 0 || !strings.Contains(r.stderr, "to rotate keys, give the old key as a read-only key") {
		t.Fatalf("replicate with another key: %d %q", r.code, r.stderr)
	}
	if r := runBin(t, bin, "replicate", dbPath, dbURL); r.code == 0 || !strings.Contains(r.stderr, "the replica is encrypted; give its key") {
		t.Fatalf("replicate without a key: %d %q", r.code, r.stderr)
	}

	// Rotation: B writes, A stays readable.
	d = startDaemon(t, bin, "replicate", "-config", configWith(keyB, keyA))
	waitFor(t, 60*time.Second, "a snapshot under the new key", func() bool {
		return d.logged("taking one with the current key now") && d.logged("snapshot stored")
	})
	insertMarkers(20)
	syncDB(t, bin, dbPath, d)
	d.stop(t)
	finalHash := sha3sum(t, dbPath)

	if r := runBin(t, bin, "restore", "-key-file", keyB, "-o", out, dbURL); r.code != 0 {
		t.Fatalf("restore of the latest state with only the new key: %s", r.stderr)
	}
	if got := sha3sum(t, out); got != finalHash {
		t.Fatalf("restore with the new key has hash %s, the source %s", got, finalHash)
	}
	os.Remove(out)
	r := runBin(t, bin, "restore", "-key-file", keyB, "-txid", fmt.Sprint(mid), "-o", out, dbURL)
	if r.code == 0 || !strings.Contains(r.stderr, "not one of the keys given") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Fatalf("restore of txid %d, from before the rotation, with only the new key: %d %q; want one line refusing it", mid, r.code, r.stderr)
	}
	noRestoreLeft(t, dir, out)
	if r := runBin(t, bin, "restore", "-key-file", keyB, "-key-file", keyA, "-txid", fmt.Sprint(mid), "-o", out, dbURL); r.code != 0 {
		t.Fatalf("restore of txid %d with both keys: %s", mid, r.stderr)
	}
	if got := sha3sum(t, out); got != midHash {
		t.Fatalf("restore of txid %d with both keys has hash %s, the source had %s", mid, got, midHash)
	}
	os.Remove(out)
	if r := runBin(t, bin, "verify", "-deep", "-key-file", keyB, "-key-file", keyA, dbURL); r.code != 0 {
		t.Fatalf("verify -deep across the rotation: %s %s", r.stdout, r.stderr)
	}
	if r := runBin(t, bin, "restore", "-key-file", keyC, "-o", out+"2", dbURL); r.code == 0 {
		t.Fatal("a key that never wrote here restored")
	}
	scanBucket(t, bucket, srv)
}

// secretOf returns the secret line of a key file, to look for in logs.
func secretOf(t *testing.T, keyFile string) string {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "#") {
			return strings.TrimSpace(line)
		}
	}
	t.Fatal("no key line")
	return ""
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes (%v), want the %d sent", path, len(got), err, len(want))
	}
}

// scanBucket reads every object of bucket as stored and fails if a marker
// shows, in the raw bytes or in what any zstd frame in them decompresses
// to. It returns the keys it read.
func scanBucket(t *testing.T, bucket string, srv testenv.S3Server) []string {
	t.Helper()
	tg, err := config.ParseURL(fmt.Sprintf("s3://%s?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	store, err := target.Open(context.Background(), config.Replica{Target: tg}, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw := seal.Raw(store)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var keys []string
	for info, err := range raw.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := raw.Get(context.Background(), info.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
		views := [][]byte{b}
		for i := 0; i+4 <= len(b); i++ {
			if bytes.Equal(b[i:i+4], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
				if p, err := dec.DecodeAll(b[i:], nil); err == nil {
					views = append(views, p)
				}
			}
		}
		for _, v := range views {
			for _, m := range [][]byte{textMarker, blobMarker, []byte("FBLOB")} {
				if bytes.Contains(v, m) {
					t.Fatalf("object %s holds the marker %q", info.Key, m)
				}
			}
		}
	}
	return keys
}

// Bad keys and key files are refused in one line before anything is read
// or written; a replica stored in the clear is not read with a key.
func TestKeyFileRefusals(t *testing.T) {
	bin := ferryBinary(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if r := runBin(t, bin, "keygen", "-o", key); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runBin(t, bin, "keygen", "-o", key); r.code == 0 || !strings.Contains(r.stderr, "exists; keygen never overwrites a key") {
		t.Fatalf("keygen over an existing key: %d %q", r.code, r.stderr)
	}
	if r := runBin(t, bin, "keygen"); r.code != 2 || !strings.Contains(r.stderr, "-o PATH is required") {
		t.Fatalf("keygen without -o: %d %q", r.code, r.stderr)
	}
	loose := filepath.Join(dir, "loose")
	b, _ := os.ReadFile(key)
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644)
	notKey := filepath.Join(dir, "notkey")
	if err := os.WriteFile(notKey, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.Join(dir, "replica")
	for _, tc := range []struct {
		file, want string
	}{
		{loose, "mode 0644 lets others read it; run chmod 600 " + loose},
		{notKey, "not a ferry key file"},
		{filepath.Join(dir, "none"), "no such file"},
	} {
		for _, args := range [][]string{
			{"restore", "-key-file", tc.file, "-o", filepath.Join(dir, "out.db"), url},
			{"replicate", "-key-file", tc.file, filepath.Join(dir, "app.db"), url},
			{"push", "-key-file", tc.file, key, url},
		} {
			r := runBin(t, bin, args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
				t.Errorf("%v: exit %d, %q; want a usage error saying %q", args, r.code, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, strings.TrimSpace(secretOf(t, key))) {
				t.Fatalf("%v printed the key", args)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "replica")); err == nil {
		t.Fatal("a refused command created the replica")
	}

	// A file pushed in the clear is not read with a key.
	plain := filepath.Join(dir, "plain.txt")
	if err := os.WriteFile(plain, []byte("in the clear"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, bin, "push", "-wait", "-spool", filepath.Join(dir, "spool"), plain, url); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	r := runBin(t, bin, "get", "-key-file", key, url, "plain.txt", filepath.Join(dir, "got"))
	if r.code == 0 || !strings.Contains(r.stderr, "not encrypted, but a key was given") {
		t.Fatalf("get -key-file of a file stored in the clear: %d %q", r.code, r.stderr)
	}
	if r := runBin(t, bin, "get", url, "plain.txt", filepath.Join(dir, "got")); r.code != 0 {
		t.Fatalf("get without a key: %s", r.stderr)
	}
	sameFile(t, filepath.Join(dir, "got"), []byte("in the clear"))
}
