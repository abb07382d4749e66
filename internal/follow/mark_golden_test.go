package follow

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The record beside a follower's database is pinned: a follower upgraded
// in place must read what the one before it wrote, or it restores anew.
func TestMarkGolden(t *testing.T) {
	m := mark{Replica: "s3://bucket/app?region=eu-west-1", TXID: 0x1234, Time: time.Unix(1700000000, 123456789).UTC(), PageSize: 4096}
	path := filepath.Join("testdata", "mark-v1.bin")
	got := m.encode()
	if os.Getenv("FERRY_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("a mark encodes as %x, the golden file holds %x", got, want)
	}
	back, sum, ok := decodeSlot(want)
	if !ok || back.TXID != m.TXID || !back.Time.Equal(m.Time) || back.PageSize != m.PageSize || sum != [32]byte(want[32:64]) {
		t.Fatalf("the golden mark decodes as %+v (%v)", back, ok)
	}
}
