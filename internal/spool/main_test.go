package spool

import (
	"os"
	"testing"
)

// TestMain lets the test binary play the child process of the lock and
// crash tests: the standard pattern of re-executing os.Args[0] with an env
// var naming the role.
func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		holdChild(dir)
	}
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
	}
	os.Exit(m.Run())
}
