package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func execRig(t *testing.T) (bin, cfg, inbox, replica string) {
	t.Helper()
	bin = ferryBinary(t)
	dir := t.TempDir()
	inbox, replica = filepath.Join(dir, "inbox"), filepath.Join(dir, "replica")
	os.Mkdir(inbox, 0o755)
	cfg = filepath.Join(dir, "ferry.yml")
	os.WriteFile(cfg, fmt.Appendf(nil, "spool: %s\nfiles:\n  - inbox: %s\n    replica: file://%s\n", filepath.Join(dir, "spool"), inbox, replica), 0o644)
	return bin, cfg, inbox, replica
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestExecExitsWithChildCodeAfterFlushing runs an application that drops a
// file into the inbox and exits 7 at once: ferry must ship the file before
// it exits, and exit 7.
func TestExecExitsWithChildCodeAfterFlushing(t *testing.T) {
	bin, cfg, inbox, replica := execRig(t)
	app := fmt.Sprintf("echo hello > %s/out.part && mv %s/out.part %s/out.txt; exit 7", inbox, inbox, inbox)
	cmd := exec.Command(bin, "-log-level", "warn", "replicate", "-config", cfg, "-exec", "sh -c '"+app+"'")
	out, err := cmd.CombinedOutput()
	if code := exitCode(t, err); code != 7 {
		t.Fatalf("exit %d, want the application's 7: %s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(replica, "out.txt")); err != nil || string(b) != "hello\n" {
		t.Fatalf("file the application left was not flushed before exit: %q, %v", b, err)
	}
}

// TestExecForwardsSignals sends SIGTERM to ferry; the application must get
// it, and ferry must exit as the application did.
func TestExecForwardsSignals(t *testing.T) {
	bin, cfg, _, _ := execRig(t)
	marker := filepath.Join(t.TempDir(), "got-term")
	app := fmt.Sprintf("trap 'touch %s; exit 3' TERM; while :; do sleep 0.05; done", marker)
	cmd := exec.Command(bin, "-log-level", "warn", "replicate", "-config", cfg, "-exec", "sh -c \""+app+"\"")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := exitCode(t, err); code != 3 {
			t.Fatalf("exit %d, want the application's 3", code)
		}
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		t.Fatal("ferry did not exit after SIGTERM")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the application never received SIGTERM")
	}
}
