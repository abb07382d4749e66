package main

import (
	"bufio"
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
// it, and ferry must exit as the application did. The application says
// "ready" on its standard output, which it shares with ferry, once its
// trap is set: ferry registers its signal forwarding before it starts the
// application, so from that line on a SIGTERM cannot arrive too early.
func TestExecForwardsSignals(t *testing.T) {
	bin, cfg, _, _ := execRig(t)
	marker := filepath.Join(t.TempDir(), "got-term")
	app := fmt.Sprintf("trap 'touch %s; exit 3' TERM; echo ready; while :; do sleep 0.05; done", marker)
	cmd := exec.Command(bin, "-log-level", "warn", "replicate", "-config", cfg, "-exec", "sh -c \""+app+"\"")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Lines are read until the pipe closes, so that neither ferry nor the
	// application ever blocks on a full pipe; Wait comes only after that.
	ready := make(chan struct{})
	lines := make(chan []string, 1)
	go func() {
		var seen []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			seen = append(seen, sc.Text())
			if sc.Text() == "ready" {
				close(ready)
			}
		}
		lines <- seen
	}()
	select {
	case <-ready:
	case seen := <-lines:
		err := cmd.Wait()
		t.Fatalf("ferry ended (%v) before the application was ready; its output: %q", err, seen)
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the application did not start within 60s")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lines:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("ferry did not exit after SIGTERM")
	}
	if code := exitCode(t, cmd.Wait()); code != 3 {
		t.Fatalf("exit %d, want the application's 3", code)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the application never received SIGTERM")
	}
}
