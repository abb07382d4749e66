package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydb/ferry/internal/inbox"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// TestTakeInboxFiles hands small files, a large one among them and a
// file that vanished to takeInboxFiles: the files before the vanished one
// are taken, in order (small ones in bundles, the large one alone), and
// gone from the inbox; the spool holds each with its bytes; the vanished
// one is the error, and the file after it stays.
func TestTakeInboxFiles(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "inbox")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	want := map[string][]byte{}
	var files []inbox.File
	add := func(key string, size int) {
		p := filepath.Join(in, key)
		if size >= 0 {
			data := bytes.Repeat([]byte(key), size/len(key)+1)[:size]
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			want[key] = data
		}
		files = append(files, inbox.File{Path: p, Key: key})
	}
	for i := range 5 {
		add(fmt.Sprintf("s%d", i), 10+i)
	}
	add("large", uploader.BundleFileMax+1)
	for i := 5; i < 8; i++ {
		add(fmt.Sprintf("s%d", i), 10+i)
	}
	add("gone", -1) // listed by the scan, removed before the handoff
	add("after", 7)

	taken, err := takeInboxFiles(sp, "mem://a", files)
	if taken != 9 || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("took %d, %v; want 9 and the vanished file's error", taken, err)
	}
	for _, f := range files[:9] {
		if _, err := os.Stat(f.Path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is still in the inbox after it was taken", f.Key)
		}
	}
	if _, err := os.Stat(files[10].Path); err != nil {
		t.Fatalf("the file after the failure left the inbox: %v", err)
	}

	got := map[string][]byte{}
	var shapes []int
	for {
		e, err := sp.Claim(uploader.FilesQueue)
		if errors.Is(err, spool.ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var job uploader.Job
		if err := e.Payload(&job); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(e.Path())
		if err != nil {
			t.Fatal(err)
		}
		if len(job.Files) == 0 {
			got[job.Key] = data
			shapes = append(shapes, 1)
			continue
		}
		parts, err := job.Parts(data)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range job.Files {
			got[f.Key] = parts[i]
		}
		shapes = append(shapes, len(job.Files))
	}
	if fmt.Sprint(shapes) != "[5 1 3]" {
		t.Fatalf("spool entries of %v files, want a bundle of 5, the large file alone, a bundle of 3", shapes)
	}
	for _, f := range files[:9] {
		if !bytes.Equal(got[f.Key], want[f.Key]) {
			t.Fatalf("%s spooled as %d bytes, want %d", f.Key, len(got[f.Key]), len(want[f.Key]))
		}
	}
}
