package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binDir holds the ferry binary built once for all tests that run it as a
// separate process; TestMain removes it.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	useOFDLocks() // as main does, for the commands tests run in this process
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ferryBinary builds the real binary, once per test run.
func ferryBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binError = os.MkdirTemp("", "ferry-bin-")
		if binError != nil {
			return
		}
		binPath = filepath.Join(binDir, "ferry")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binError = &buildError{err: err, out: string(out)}
		}
	})
	if binError != nil {
		t.Fatalf("build ferry: %v", binError)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }
