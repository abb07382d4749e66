package durable

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// besideChildEnv makes the test binary a process that creates a file
// beside the path it names, says its name, and waits to be killed.
const besideChildEnv = "FERRY_DURABLE_BESIDE_CHILD"

func TestMain(m *testing.M) {
	if out := os.Getenv(besideChildEnv); out != "" {
		create := CreateBeside
		if os.Getenv(besideChildEnv+"_DIR") != "" {
			create = MkdirBeside
		}
		f, err := create(out, ".ferry-test-")
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString(f.Name() + "\n")
		select {}
	}
	os.Exit(m.Run())
}

// startHolder starts a process that makes a file (or, with dir, a
// directory) beside out with infix ".ferry-test-" and holds it until
// killed; it returns the process and the path it holds.
func startHolder(t *testing.T, out string, dir bool) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), besideChildEnv+"="+out)
	if dir {
		cmd.Env = append(cmd.Env, besideChildEnv+"_DIR=1")
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(filepath.Base(line), "."+filepath.Base(out)+".ferry-test-") {
		t.Fatalf("child said %q, %v", line, err)
	}
	return cmd, strings.TrimSpace(line)
}

// names returns the names in dir, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestRemoveLeftBehind kills a process with kill -9 while it holds a
// file CreateBeside made, with the -wal and -shm files SQLite leaves
// beside a database it had open: RemoveLeftBehind for the same output
// removes all three, and leaves alone a file another process still
// holds, the output itself and the files of other outputs.
func TestRemoveLeftBehind(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "app.db")
	killed, left := startHolder(t, out, false)
	for _, side := range []string{"-wal", "-shm"} {
		if err := os.WriteFile(left+side, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.Wait()
	_, live := startHolder(t, out, false)
	for _, name := range []string{"app.db", "other.db", ".other.db.ferry-test-1", ".app.db.ferry-get-2"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	if err := RemoveLeftBehind(out, ".ferry-test-"); err != nil {
		t.Fatal(err)
	}
	f, err := CreateBeside(out, ".ferry-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := names(t, dir)
	want := []string{filepath.Base(f.Name()), filepath.Base(live), ".app.db.ferry-get-2", ".other.db.ferry-test-1", "app.db", "other.db"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after CreateBeside the directory holds %q, want %q", got, want)
	}
	// The new file is held: a clean-up from elsewhere leaves it.
	if err := RemoveLeftBehind(out, ".ferry-test-"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); err != nil {
		t.Fatalf("a file in use was removed: %v", err)
	}
}

// TestCreateBesideRenamedOpen checks the way callers finish: renamed into
// place while open, the file is the output, and no later clean-up takes
// it for one left behind.
func TestCreateBesideRenamedOpen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "restored.db")
	f, err := CreateBeside(out, ".ferry-test-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("content"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := RemoveLeftBehind(out, ".ferry-test-"); err != nil {
		t.Fatal(err)
	}
	g, err := CreateBeside(out, ".ferry-test-")
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	os.Remove(g.Name())
	if b, err := os.ReadFile(out); err != nil || string(b) != "content" {
		t.Fatalf("the output holds %q, %v", b, err)
	}
}

// TestRemoveLeftBehindDirectory kills a process with kill -9 while it
// holds a directory MkdirBeside made and filled: RemoveLeftBehind removes
// it whole, and leaves alone one another process still holds.
func TestRemoveLeftBehindDirectory(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "tree")
	killed, left := startHolder(t, out, true)
	if err := os.MkdirAll(filepath.Join(left, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "sub", "half"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	killed.Process.Signal(syscall.SIGKILL)
	killed.Wait()
	_, live := startHolder(t, out, true)
	if err := RemoveLeftBehind(out, ".ferry-test-"); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{filepath.Base(live)}; !slices.Equal(got, want) {
		t.Fatalf("after the clean-up the directory holds %q, want %q", got, want)
	}
}
