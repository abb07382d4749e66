package durable

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestDirSharesSyncs runs many Syncs of one directory at once, each
// after a rename of its own into it, and checks that all succeed.
func TestDirSharesSyncs(t *testing.T) {
	dir := t.TempDir()
	d := NewDir(dir)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				errs <- err
				return
			}
			if err := os.Rename(p, filepath.Join(dir, fmt.Sprint(i))); err != nil {
				errs <- err
				return
			}
			errs <- d.Sync()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDirReportsFailure checks that a failed fsync reaches every caller
// it was meant to cover, and that the next round tries again.
func TestDirReportsFailure(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "gone")
	d := NewDir(dir)
	var wg sync.WaitGroup
	failed := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failed <- d.Sync()
		}()
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		if err == nil {
			t.Fatal("Sync of a missing directory succeeded")
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatalf("Sync once the directory exists: %v", err)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"6.1.0-13-amd64", true},
		{"5.8.0", true},
		{"5.10.102.1-microsoft-standard-WSL2", true},
		{"5.7.19", false},
		{"4.19.0-25-amd64", false},
		{"3.10.0-1160.el7.x86_64", false},
		{"5.8-rc1", true},
		{"garbage", false},
		{"", false},
	} {
		if got := kernelAtLeast(tc.release, 5, 8); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 8) = %v, want %v", tc.release, got, tc.want)
		}
	}
}

func TestSyncFS(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok, err := SyncFS(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("syncfs used: %v", ok)
}
