package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestArtifactRoundTripThroughCLI(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(src, "bin", "run"), []byte("#!/bin/sh\n"), 0o755)
	url := "file://" + filepath.Join(dir, "store", "builds", "42")

	if r := runFerry(t, "artifact", "upload", "-lease", "1m", src, url); r.code != 0 {
		t.Fatalf("upload: %s", r.stderr)
	}
	r := runFerry(t, "artifact", "peek", url)
	if r.code != 0 || !strings.Contains(r.stdout, "bin/run") || !strings.Contains(r.stdout, "a.txt") {
		t.Fatalf("peek: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	out := filepath.Join(dir, "out")
	if r := runFerry(t, "artifact", "download", url, out); r.code != 0 {
		t.Fatalf("download: %s", r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(out, "a.txt")); err != nil || string(b) != "alpha" {
		t.Fatalf("a.txt = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(out, "bin", "run")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/run: %v %v", fi, err)
	}
	// A second download into the now non-empty destination is refused in
	// one line and leaves it as it was.
	r = runFerry(t, "artifact", "download", url, out)
	if r.code == 0 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "not an empty directory") {
		t.Fatalf("download over a full destination: exit %d, %q", r.code, r.stderr)
	}
	if r := runFerry(t, "artifact", "peek", "file://"+filepath.Join(dir, "store", "builds", "43")); r.code == 0 {
		t.Fatal("peek of a missing artifact succeeded")
	}
}
