package spool

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
)

// Names inside a spool directory.
const (
	lockName     = "LOCK"
	tmpName      = "tmp"
	queuesName   = "q"
	checkoutName = "checkout"
	dataName     = "data"
	metaName     = "meta.json"
	metaTmpName  = "meta.json.tmp"
)

// FailedQueue holds entries that failed permanently, each with its reason
// and the queue it failed in.
const FailedQueue = "failed"

// ID names an entry for its whole life, across queues. IDs sort in the
// order the spool created them: 20 digits of Unix nanoseconds, forced
// strictly increasing within a spool (also across restarts and a clock that
// steps back), then 8 hex digits of randomness so that IDs from two spools
// never collide if entries are ever copied between them.
type ID string

const idLen = 20 + 1 + 8

// newID returns an ID greater than every ID this spool has seen. The caller
// holds s.mu.
func (s *Spool) newID() ID {
	n := s.now().UnixNano()
	if n <= s.lastNanos {
		n = s.lastNanos + 1
	}
	s.lastNanos = n
	return ID(fmt.Sprintf("%020d-%08x", n, rand.Uint32()))
}

// parseID reports whether name is an entry ID and returns its nanoseconds.
func parseID(name string) (int64, bool) {
	if len(name) != idLen || name[20] != '-' {
		return 0, false
	}
	for i := 0; i < 20; i++ {
		if name[i] < '0' || name[i] > '9' {
			return 0, false
		}
	}
	for i := 21; i < idLen; i++ {
		c := name[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(name[:20], 10, 64)
	return n, err == nil
}

// validQueue reports whether name can name a queue: 1 to 64 characters of
// [a-z0-9._-], starting with a letter or digit (so never "." or "..").
func validQueue(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

func checkQueue(name string) error {
	if !validQueue(name) {
		return fmt.Errorf("invalid queue name %q: want 1-64 of [a-z0-9._-], starting with a letter or digit", name)
	}
	return nil
}

func queuesDir(dir string) string       { return filepath.Join(dir, queuesName) }
func queueDir(dir, queue string) string { return filepath.Join(dir, queuesName, queue) }
func checkoutDir(dir, queue string) string {
	return filepath.Join(dir, queuesName, queue, checkoutName)
}
func readyPath(dir, queue string, id ID) string {
	return filepath.Join(dir, queuesName, queue, string(id))
}
func outPath(dir, queue string, id ID) string {
	return filepath.Join(dir, queuesName, queue, checkoutName, string(id))
}
