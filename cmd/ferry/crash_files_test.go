package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestCrashShippingFilesToS3 drops 2,000 files into an inbox, 100 per
// round, and kills the daemon shipping them with SIGKILL at a random moment
// of each of 20 rounds, restarting it each time. Afterwards the bucket must hold every file once, with the
// right bytes, nothing else, and the spool must be empty and fsck-clean.
func TestCrashShippingFilesToS3(t *testing.T) {
	srv := testenv.S3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bucket := testenv.Bucket(t, srv)
	url := fmt.Sprintf("s3://%s/uploads?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)

	in, originals, spoolRoot := filepath.Join(dir, "inbox"), filepath.Join(dir, "originals"), filepath.Join(dir, "spool")
	const files = 2000
	want := map[string][]byte{}
	for i := range files {
		key := fmt.Sprintf("d%02d/f%04d.bin", i%20, i)
		data := make([]byte, 512+mrand.IntN(8<<10))
		rand.Read(data)
		want[key] = data
		p := filepath.Join(originals, filepath.FromSlash(key))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ferry.yml")
	os.WriteFile(cfg, fmt.Appendf(nil, "spool: %s\nfiles:\n  - inbox: %s\n    replica: %q\n", spoolRoot, in, url), 0o644)

	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "-log-level", "warn", "replicate", "-config", cfg)
		cmd.Stderr = &bytes.Buffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	for i := range 20 {
		// Each round, 100 more files arrive as an application would
		// deliver them, renamed in, so every kill lands with work in flight.
		batch := fmt.Sprintf("d%02d", i)
		if err := os.Rename(filepath.Join(originals, batch), filepath.Join(in, batch)); err != nil {
			t.Fatal(err)
		}
		cmd := start()
		// The inbox waits a second of quiet before it takes a file, so kills
		// fall between 1 and 1.8 s, while that round's files move and ship.
		time.Sleep(time.Duration(1000+mrand.IntN(800)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		rep, _ := spool.Check(filepath.Join(spoolRoot, "files"), spool.Limits{}, time.Now())
		t.Logf("kill %d: %d files left in the inbox, %d in the spool", i+1, countFiles(t, in), rep.Entries)
	}

	cmd := start()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	store, err := target.OpenURL(context.Background(), url, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	filesSpoolDir := filepath.Join(spoolRoot, "files")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rep, err := spool.Check(filesSpoolDir, spool.Limits{}, time.Now())
		if err == nil && rep.Entries == 0 && countFiles(t, in) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained after 3 minutes: %d in inbox, spool %+v, daemon: %s", countFiles(t, in), rep, cmd.Stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	got := 0
	for info, err := range store.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		data, ok := want[info.Key]
		if !ok {
			t.Errorf("unexpected object %q in the bucket", info.Key)
			continue
		}
		got++
		if body := readObject(t, store, info.Key); !bytes.Equal(body, data) {
			t.Errorf("%s: %d bytes in the bucket differ from the %d sent", info.Key, len(body), len(data))
		}
	}
	if got != files {
		t.Fatalf("bucket holds %d of the %d files", got, files)
	}
	rep, err := spool.Check(filesSpoolDir, spool.Limits{}, time.Now())
	if err != nil || !rep.OK() || rep.Entries != 0 {
		t.Fatalf("spool after the run: %+v, %v", rep, err)
	}
}

func countFiles(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func readObject(t *testing.T, s objstore.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}
