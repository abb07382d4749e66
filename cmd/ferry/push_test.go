package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPushWaitToFileReplica(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FERRY_SPOOL", filepath.Join(dir, "spool"))
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "b.txt"), []byte("beta"), 0o644)
	replica := filepath.Join(dir, "replica")
	r := runFerry(t, "push", "-wait", "-key", "up/2026", src, "file://"+replica)
	if r.code != 0 {
		t.Fatalf("push -wait: exit %d: %s", r.code, r.stderr)
	}
	for key, want := range map[string]string{"up/2026/a.txt": "alpha", "up/2026/sub/b.txt": "beta"} {
		got, err := os.ReadFile(filepath.Join(replica, filepath.FromSlash(key)))
		if err != nil || string(got) != want {
			t.Errorf("%s in the replica: %q, %v; want %q", key, got, err, want)
		}
	}
	if r := runFerry(t, "spool", "fsck", filepath.Join(dir, "spool", "files")); r.code != 0 {
		t.Fatalf("spool not clean after push -wait: %s %s", r.stdout, r.stderr)
	}
}

func TestPushWithoutWaitLeavesFilesSpooled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FERRY_SPOOL", filepath.Join(dir, "spool"))
	f := filepath.Join(dir, "a.txt")
	os.WriteFile(f, []byte("alpha"), 0o644)
	r := runFerry(t, "push", f, "file://"+filepath.Join(dir, "replica"))
	if r.code != 0 || !strings.Contains(r.stderr, "spooled 1 file") {
		t.Fatalf("push: exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "replica", "a.txt")); err == nil {
		t.Fatal("push without -wait and without a daemon uploaded by itself")
	}
	// A later -wait ships what was left, too.
	g := filepath.Join(dir, "b.txt")
	os.WriteFile(g, []byte("beta"), 0o644)
	if r := runFerry(t, "push", "-wait", g, "file://"+filepath.Join(dir, "replica")); r.code != 0 {
		t.Fatalf("push -wait: %s", r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "replica", "a.txt")); err != nil || string(b) != "alpha" {
		t.Fatalf("earlier spooled file not shipped: %q %v", b, err)
	}
}

func TestPushRejectsBadInputBeforeSpooling(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FERRY_SPOOL", filepath.Join(dir, "spool"))
	f := filepath.Join(dir, "a.txt")
	os.WriteFile(f, []byte("alpha"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"push", f, f, "file:///tmp/r"}, "would both upload to key"},
		{[]string{"push", filepath.Join(dir, "missing"), "file:///tmp/r"}, "no such file"},
		{[]string{"push", f, "s3://"}, "missing bucket name"},
		{[]string{"push", "-key", "../up", f, "file:///tmp/r"}, "leaves the replica"},
	} {
		r := runFerry(t, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want one line containing %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "spool", "files", "q")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "spool", "files", "q", "files"))
		if len(entries) > 1 { // only checkout/
			t.Fatalf("a rejected push left %d entries spooled", len(entries)-1)
		}
	}
}
