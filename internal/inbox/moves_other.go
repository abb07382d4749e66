//go:build !linux

package inbox

import "errors"

// moveWatch is only on Linux; elsewhere a file renamed in waits for its
// quiet period like any other.
type moveWatch struct{}

func watchMoves(string) (*moveWatch, error) {
	return nil, errors.New("no rename events on this system")
}

func (*moveWatch) Names() <-chan string { return nil }
func (*moveWatch) watch(string)         {}
func (*moveWatch) Close()               {}
