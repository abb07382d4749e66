package spool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

const holdEnv = "FERRY_SPOOL_TEST_HOLD"

// holdChild is the child half of TestLockChildProcess: open the spool,
// say so, and hold it until stdin closes.
func holdChild(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Println("locked")
	bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
	os.Exit(0)
}

func TestLockInProcess(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	_, err := Open(dir, Options{})
	want := fmt.Sprintf("spool %s is in use by another ferry process (pid %d)", dir, os.Getpid())
	if !errors.Is(err, ErrInUse) || err.Error() != want {
		t.Fatalf("second Open = %v\nwant %s", err, want)
	}
	// The failed Open must not have released the first one's lock.
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("third Open = %v, want ErrInUse", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
	if _, err := s.Enqueue("q", nil, writeBytes(nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue on a closed spool = %v", err)
	}
}

func startHolder(t *testing.T, dir string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q", line)
	}
	return cmd, func() { stdin.Close() }
}

func TestLockChildProcess(t *testing.T) {
	dir := t.TempDir()
	cmd, release := startHolder(t, dir)
	_, err := Open(dir, Options{})
	want := fmt.Sprintf("spool %s is in use by another ferry process (pid %d)", dir, cmd.Process.Pid)
	if !errors.Is(err, ErrInUse) || err.Error() != want {
		release()
		cmd.Wait()
		t.Fatalf("Open while a child holds it = %v\nwant %s", err, want)
	}
	release()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s := openT(t, dir, Options{})
	s.Close()

	// kill -9 of the holder releases the lock too.
	cmd, release = startHolder(t, dir)
	defer release()
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	s = openT(t, dir, Options{})
	s.Close()
}
