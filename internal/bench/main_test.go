package bench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
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
