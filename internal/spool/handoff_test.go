package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type handoffJob struct {
	Key string `json:"key"`
}

func writeSrc(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHandoffAdoptedByRunningOwner(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src := writeSrc(t, "handed over")
	if err := Handoff(dir, "files", handoffJob{Key: "a/b"}, src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("handoff removed its source: %v", err)
	}
	if _, err := s.Claim("files"); !errors.Is(err, ErrEmpty) {
		t.Fatalf("claim before adoption: %v, want empty", err)
	}
	n, err := s.Adopt()
	if err != nil || n != 1 {
		t.Fatalf("adopt = %d, %v; want 1 entry", n, err)
	}
	e, err := s.Claim("files")
	if err != nil {
		t.Fatal(err)
	}
	var job handoffJob
	if err := e.Payload(&job); err != nil || job.Key != "a/b" {
		t.Fatalf("payload = %+v, %v", job, err)
	}
	b, err := os.ReadFile(e.Path())
	if err != nil || string(b) != "handed over" {
		t.Fatalf("data = %q, %v", b, err)
	}
	if s.Bytes() != int64(len("handed over")) {
		t.Fatalf("bytes = %d after adoption", s.Bytes())
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(dir, Limits{}, s.now())
	if err != nil || !rep.OK() {
		t.Fatalf("fsck after handoff: %+v, %v", rep.Problems, err)
	}
}

func TestHandoffWithoutOwnerAdoptedOnOpen(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"1", "2", "3"} {
		if err := Handoff(dir, "files", handoffJob{Key: k}, writeSrc(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Len("files"); got != 3 {
		t.Fatalf("Open adopted %d entries, want 3", got)
	}
}

func TestAdoptionWaitsForRoom(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := Handoff(dir, "files", nil, writeSrc(t, "0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Adopt(); err != nil || n != 0 {
		t.Fatalf("adopt of an entry over the bound = %d, %v; want it left waiting", n, err)
	}
	left, _ := os.ReadDir(filepath.Join(dir, incomingName, "files"))
	if len(left) != 1 {
		t.Fatalf("the entry that did not fit is gone from incoming/: %d left", len(left))
	}
}

func TestHandoffRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	if err := Handoff(dir, "files", nil, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("handoff of a missing file succeeded")
	}
	if err := Handoff(dir, "../escape", nil, writeSrc(t, "x")); err == nil {
		t.Fatal("handoff to a bad queue name succeeded")
	}
}

// TestHandoffFiles hands many files over at once and checks that the
// owner adopts each, whole, in order, and that bad input hands over
// nothing.
func TestHandoffFiles(t *testing.T) {
	dir := t.TempDir()
	var files []HandoffFile
	for i := range 40 {
		k := fmt.Sprintf("file-%02d", i)
		f := HandoffFile{Src: writeSrc(t, strings.Repeat(k, i+1)), Payload: handoffJob{Key: k}}
		if i%4 == 3 { // from bytes in memory rather than a file
			f = HandoffFile{Data: []byte(strings.Repeat(k, i+1)), Payload: handoffJob{Key: k}}
		}
		files = append(files, f)
	}
	if n, err := HandoffFiles(dir, "files", files); err != nil || n != len(files) {
		t.Fatalf("HandoffFiles = %d, %v", n, err)
	}
	if names := listDir(t, filepath.Join(dir, incomingName, ".tmp")); len(names) != 0 {
		t.Fatalf("incoming/.tmp holds %v", names)
	}
	s := openT(t, dir, Options{})
	if got := s.Len("files"); got != len(files) {
		t.Fatalf("Open adopted %d entries, want %d", got, len(files))
	}
	got := map[string]string{}
	for range files {
		e := claimT(t, s, "files")
		var job handoffJob
		if err := e.Payload(&job); err != nil {
			t.Fatal(err)
		}
		got[job.Key] = readData(t, e)
		if err := e.Done(); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		k := fmt.Sprintf("file-%02d", i)
		if got[k] != strings.Repeat(k, i+1) {
			t.Fatalf("%s adopted with data %q (from %s)", k, got[k], f.Src)
		}
	}
	mustCheckOK(t, dir, time.Now())

	bad := []HandoffFile{{Src: writeSrc(t, "ok")}, {Src: filepath.Join(dir, "missing")}}
	if n, err := HandoffFiles(dir, "files", bad); err == nil || n != 0 {
		t.Fatalf("HandoffFiles with a missing file = %d, %v; want 0 and an error", n, err)
	}
	if n, err := HandoffFiles(dir, "../escape", files[:1]); err == nil || n != 0 {
		t.Fatalf("HandoffFiles to a bad queue name = %d, %v", n, err)
	}
	if names := listDir(t, filepath.Join(dir, incomingName, "files")); len(names) != 0 {
		t.Fatalf("failed handoffs left %v in incoming/", names)
	}
	if names := listDir(t, filepath.Join(dir, incomingName, ".tmp")); len(names) != 0 {
		t.Fatalf("failed handoffs left %v in incoming/.tmp", names)
	}
}

// TestIncomingLeftOverIsSeenAndSwept leaves in incoming/ what a process
// that does not own the spool can leave: a hand-over killed while it was
// built, an entry and a retry request nobody takes in. Check reports each
// once it is past its limit, and the owner removes the abandoned
// hand-over, and only it, once untouched for abandonedAfter.
func TestIncomingLeftOverIsSeenAndSwept(t *testing.T) {
	dir := t.TempDir()
	// An owner made the spool, long ago, and is gone.
	s := openT(t, dir, Options{})
	s.Close()
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("handed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Handoff(dir, "files", nil, src); err != nil {
		t.Fatal(err)
	}
	if err := RequestRetry(dir, "files"); err != nil {
		t.Fatal(err)
	}
	killed := filepath.Join(dir, incomingName, ".tmp", "0123abcd")
	if err := os.MkdirAll(killed, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(killed, dataName), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mustCheckOK(t, dir, now)
	later := now.Add(2 * time.Hour)
	r, err := Check(dir, Limits{}, later)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Problems {
		rel, _ := filepath.Rel(dir, p.Path)
		got = append(got, string(p.Kind)+" "+filepath.Dir(rel))
	}
	want := []string{"too-old incoming/.retry", "stale-tmp incoming/.tmp", "too-old incoming/files"}
	if !slices.Equal(got, want) {
		t.Fatalf("Check two hours on: %q; want the abandoned hand-over, and the request and the entry not taken", got)
	}

	clk := newClock()
	clk.Set(later)
	s = openT(t, dir, Options{Now: clk.Now})
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Fatalf("the abandoned hand-over is still there after Open: %v", err)
	}
	if n := s.Len("files"); n != 1 {
		t.Fatalf("%d entries adopted, want the one handed over whole", n)
	}
}
