//go:build !linux

package inbox

import "errors"

// watchMoves is only on Linux; elsewhere a file renamed in waits for
// its quiet period like any other.
func watchMoves(string) (<-chan string, func(), error) {
	return nil, nil, errors.New("no rename events on this system")
}
