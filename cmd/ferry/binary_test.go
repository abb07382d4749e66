package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinary builds the real ferry and runs it as a user would, checking
// what the in-process tests cannot: the exit status main passes to the
// operating system and that nothing else (a panic, a stray log line)
// reaches stderr.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ferry")
	build := exec.Command(gotool, "build", "-o", bin, "-ldflags", "-X main.version=v0.0.0-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	tests := []struct {
		args       []string
		code       int
		stdout     string // a substring
		stderrLine string // the whole of stderr, less its newline; "" for none
	}{
		{args: []string{"-h"}, code: 0, stdout: "Commands:"},
		{args: []string{"version"}, code: 0, stdout: "ferry v0.0.0-test go"},
		{args: []string{"restore", "s3://"}, code: 1, stderrLine: `ferry restore: replica URL "s3://": missing bucket name`},
		{args: []string{"follow", "/tmp/ferry-binary-test-replica", "/tmp/ferry-binary-test.db"}, code: 1, stderrLine: `ferry follow: "/tmp/ferry-binary-test-replica" is not a replica URL; expected file:///abs/path or s3://bucket/prefix`},
		{args: []string{"gc", "-retention", "0s", "s3://bkt/x"}, code: 2, stderrLine: "ferry gc: -retention needs a positive duration such as 72h; run 'ferry gc -h'"},
		{args: []string{"nope"}, code: 2, stderrLine: `ferry: unknown command "nope"; run 'ferry -h'`},
		{args: []string{"restore", "-bogus"}, code: 2, stderrLine: "ferry restore: flag provided but not defined: -bogus; run 'ferry restore -h'"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, tt.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if code != tt.code {
			t.Errorf("ferry %v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, stderr.String())
		}
		if !strings.Contains(stdout.String(), tt.stdout) {
			t.Errorf("ferry %v: stdout %q does not contain %q", tt.args, stdout.String(), tt.stdout)
		}
		want := ""
		if tt.stderrLine != "" {
			want = tt.stderrLine + "\n"
		}
		if stderr.String() != want {
			t.Errorf("ferry %v: stderr %q, want %q", tt.args, stderr.String(), want)
		}
	}
}
