package wal

import (
	"encoding/binary"
	"os"
	"testing"
)

// TestIndexHeaderSettled reads the wal-index header real SQLite wrote,
// then copies of it torn the ways a writer dying in the middle of an
// update leaves it.
func TestIndexHeaderSettled(t *testing.T) {
	l := openLive(t, 4096)
	l.exec(t, "CREATE TABLE t(v TEXT)", "INSERT INTO t VALUES ('one')", "INSERT INTO t VALUES ('two')")
	// Read last: closing this descriptor drops the locks the test's
	// connection holds on the file, which only its cleanup uses after.
	shm, err := os.ReadFile(l.path + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	hdr := shm[:IndexHeaderSize]
	if !IndexHeaderSettled(hdr) {
		t.Fatalf("SQLite's own header reads as unsettled: %x", hdr)
	}
	if frames := binary.NativeEndian.Uint32(hdr[16:]); frames < 3 {
		t.Fatalf("header says %d frames; the log holds at least 3 (is this the header?)", frames)
	}
	torn := map[string]func(b []byte){
		"copies differ":       func(b []byte) { b[indexHeaderCopy+16]++ },
		"both copies changed": func(b []byte) { b[16]++; b[indexHeaderCopy+16]++ },
		"not initialised":     func(b []byte) { b[indexIsInit] = 0; b[indexHeaderCopy+indexIsInit] = 0 },
		"all zeros":           func(b []byte) { clear(b) },
		"short":               nil,
	}
	for name, tear := range torn {
		b := append([]byte(nil), hdr...)
		if tear == nil {
			b = b[:IndexHeaderSize-1]
		} else {
			tear(b)
		}
		if IndexHeaderSettled(b) {
			t.Errorf("%s: reads as settled", name)
		}
	}
}
