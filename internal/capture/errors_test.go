package capture

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/spool"
)

// TestOpenRefuses checks that Open refuses, with one line naming the path,
// everything it cannot replicate, and writes nothing while refusing.
func TestOpenRefuses(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	rollback := filepath.Join(dir, "rollback.db")
	if out, err := exec.Command("sqlite3", rollback, "CREATE TABLE t(x); INSERT INTO t VALUES(1);").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	notSQLite := filepath.Join(dir, "notes.txt")
	os.WriteFile(notSQLite, []byte(strings.Repeat("these are not the pages you are looking for\n", 10)), 0o600)
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	short := filepath.Join(dir, "short.db")
	os.WriteFile(short, []byte("SQLite format 3\x00"), 0o600)

	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"missing", filepath.Join(dir, "missing.db"), ErrNoDatabase},
		{"not sqlite", notSQLite, ErrNotSQLite},
		{"truncated header", short, ErrNotSQLite},
		{"empty", empty, ErrNotWAL},
		{"rollback journal", rollback, ErrNotWAL},
		{"directory", dir, ErrNotSQLite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(tc.path)
			o := testOptions(t.TempDir(), tc.path, map[string]objstore.Store{"mem://x": memstore.New()})
			r, err := Open(context.Background(), o)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q does not match %v", err, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.path) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q is not one line naming %s", msg, tc.path)
			}
			after, _ := os.ReadFile(tc.path)
			if !bytes.Equal(before, after) {
				t.Fatal("Open changed the file it refused")
			}
			for _, suffix := range []string{"-wal", "-shm"} {
				if _, err := os.Stat(tc.path + suffix); err == nil {
					t.Fatalf("Open created %s", tc.path+suffix)
				}
			}
		})
	}
}

// TestOpenSpoolInUse checks that a second replicator of one spool is
// refused, naming the spool.
func TestOpenSpoolInUse(t *testing.T) {
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	o := testOptions(dir, db, map[string]objstore.Store{"mem://x": memstore.New()})
	r, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = Open(context.Background(), o)
	if !errors.Is(err, spool.ErrInUse) || !strings.Contains(err.Error(), o.SpoolDir) {
		t.Fatalf("second Open: %v", err)
	}
}

// TestOpenOptions checks the options Open cannot do without.
func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	db := newDB(t, dir, 4096)
	for name, o := range map[string]Options{
		"no path":    {SpoolDir: dir, Targets: map[string]objstore.Store{"mem://x": memstore.New()}},
		"no spool":   {DBPath: db, Targets: map[string]objstore.Store{"mem://x": memstore.New()}},
		"no targets": {DBPath: db, SpoolDir: dir},
		"nil store":  {DBPath: db, SpoolDir: dir, Targets: map[string]objstore.Store{"mem://x": nil}},
	} {
		if r, err := Open(context.Background(), o); err == nil {
			r.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}
