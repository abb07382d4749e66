package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRestoreCommandEdges(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty-replica")
	os.Mkdir(empty, 0o755)
	out := filepath.Join(dir, "out.db")
	existing := filepath.Join(dir, "existing.db")
	os.WriteFile(existing, []byte("keep me"), 0o644)

	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"restore", "-o", out, "file://" + empty}, 1, "holds no snapshot"},
		{[]string{"restore", "-if-replica-exists", "-o", out, "file://" + empty}, 0, "nothing to do"},
		{[]string{"restore", "-o", existing, "file://" + empty}, 1, "never overwrites"},
		{[]string{"restore", "-if-db-not-exists", "-o", existing, "file://" + empty}, 0, "nothing to do"},
		{[]string{"restore", "-o", out, "file://" + filepath.Join(dir, "typo")}, 1, "no such directory"},
		{[]string{"snapshots", "file://" + filepath.Join(dir, "typo")}, 1, "no such directory"},
		{[]string{"txids", "file://" + filepath.Join(dir, "typo")}, 1, "no such directory"},
	} {
		r := runFerry(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line with %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Fatal("an existing database was touched")
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); !os.IsNotExist(err) {
		t.Fatal("a read-only command created the replica directory it was given")
	}
	r := runFerry(t, "txids", "file://"+empty)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing restorable") {
		t.Fatalf("txids of an empty replica: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
