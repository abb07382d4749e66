package ferry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// Replicate that returned must have stopped everything it started, or an
// embedding application leaks a goroutine per database it stops.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
