package daemon_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: once
// Run returns, the daemon's uploaders, watchers, monitors and servers
// must all have stopped.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
