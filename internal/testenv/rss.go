package testenv

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// ResetPeakRSS restarts the kernel's high-water mark of this process's
// resident set (Linux), so that PeakRSS measures from now on.
func ResetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// PeakRSS returns the process's peak resident set in MiB (VmHWM), or -1
// where the kernel does not report it.
func PeakRSS() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(io.LimitReader(f, 1<<16))
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return float64(kb) / 1024
			}
		}
	}
	return -1
}
