package bench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
	"modernc.org/sqlite"
)

func TestMain(m *testing.M) {
	// ferry runs in this process, and locks as the ferry command does:
	// its snapshots then read the database file.
	if _, err := sqlite.OFDLocking(true); err != nil {
		os.Stderr.WriteString("OFD locks: " + err.Error() + "\n")
		os.Exit(1)
	}
	if env := os.Getenv(appEnv); env != "" {
		appMain(env)
	}
	if env := os.Getenv(scheduleEnv); env != "" {
		scheduleMain(env)
	}
	code := m.Run()
	closeFixtures()
	if code == 0 {
		// The benchmarks stop every replicator they start; what may be
		// left is the HTTP client's idle keep-alive connections.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
