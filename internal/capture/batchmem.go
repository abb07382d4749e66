package capture

import "sync"

// A batch keeps what it captures in memory while it can, and only spills
// to its file past what the process lets batches hold. Writing every page
// to the batch file and reading it back to encode the change set cost
// about a tenth of the capture's CPU under a writer at full speed (two
// system calls and two copies per 256 KiB, for data that lives less than
// a second); held in memory, a page is copied once into the batch and
// read from there.
//
// The memory is bounded for the whole process, not per batch: a fleet of
// databases that each write a little holds a little each, and one that
// writes a full batch a second holds up to two batches (the one in flight
// and the next), while the rest, if the bound is reached, spill to their
// files as before.

// defaultBatchMemory is how much memory the batches of one process may
// hold: two full batches of one busy database at the default batch size,
// and room for others.
const defaultBatchMemory = 64 << 20

// batchMemory is the process's bound on the memory of capture batches.
var batchMemory = newMemoryBudget(defaultBatchMemory)

// memoryBudget hands out bytes of memory up to a limit.
type memoryBudget struct {
	mu    sync.Mutex
	limit int64
	used  int64
}

func newMemoryBudget(limit int64) *memoryBudget { return &memoryBudget{limit: limit} }

// reserve takes n bytes if they are there.
func (m *memoryBudget) reserve(n int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used+n > m.limit {
		return false
	}
	m.used += n
	return true
}

// release gives back n bytes taken by reserve.
func (m *memoryBudget) release(n int64) {
	m.mu.Lock()
	m.used -= n
	m.mu.Unlock()
}

// inUse returns the bytes reserved.
func (m *memoryBudget) inUse() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}
