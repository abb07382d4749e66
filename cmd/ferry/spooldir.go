package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferrydb/ferry/internal/objstore"
)

// spoolRoot picks the directory under which ferry keeps its spools: the
// -spool flag, else the config's spool, else $FERRY_SPOOL, else the user's
// state directory. push and the daemon resolve it the same way, so files
// pushed without -wait land where a running daemon looks.
func spoolRoot(flagValue, configValue string) (string, error) {
	for _, v := range []string{flagValue, configValue, os.Getenv("FERRY_SPOOL")} {
		if v != "" {
			return filepath.Abs(v)
		}
	}
	state := os.Getenv("XDG_STATE_HOME")
	if state == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no spool directory: pass -spool DIR or set FERRY_SPOOL (%w)", err)
		}
		state = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(state, "ferry"), nil
}

// filesSpool is the spool that plain files travel through.
func filesSpool(root string) string { return filepath.Join(root, "files") }

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum, _, err := objstore.HashBody(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return sum, nil
}
