package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSpareReuse finishes small entries and checks that the next ones are
// built in their directories, whole: data cut to its new length, meta
// rewritten, the spare gone from spare/. A spare Close leaves serves the
// next Open.
func TestSpareReuse(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	long := strings.Repeat("x", 5000)
	enqueueT(t, s, "up", long, map[string]string{"key": strings.Repeat("k", 300)})
	e := claimT(t, s, "up")
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, filepath.Join(dir, spareName)); len(got) != 1 {
		t.Fatalf("spare/ holds %v after Done, want one spare", got)
	}
	tmpEmpty(t, dir)

	// Shorter data and meta than the spare holds: both must be cut.
	id := enqueueT(t, s, "up", "short", "p")
	if s.spareUses != 1 {
		t.Fatalf("%d entries built in spares, want 1", s.spareUses)
	}
	if got := listDir(t, filepath.Join(dir, spareName)); len(got) != 0 {
		t.Fatalf("spare/ holds %v after its spare was used", got)
	}
	e = claimT(t, s, "up")
	var p string
	if err := e.Payload(&p); err != nil || e.ID() != id || p != "p" || readData(t, e) != "short" {
		t.Fatalf("entry built in a spare: %s %q %q, %v", e.ID(), readData(t, e), p, err)
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}

	// The batch path builds in spares too.
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("from a batch"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := s.NewBatch("up")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddFile("q", src); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if s.spareUses != 2 {
		t.Fatalf("%d entries built in spares, want 2", s.spareUses)
	}
	e = claimT(t, s, "up")
	if got := readData(t, e); got != "from a batch" {
		t.Fatalf("batch entry built in a spare holds %q", got)
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	mustCheckOK(t, dir, time.Now())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	enqueueT(t, s, "up", "after a restart", nil)
	if s.spareUses != 1 {
		t.Fatalf("%d entries built in spares after reopening, want 1", s.spareUses)
	}
	if got := readData(t, claimT(t, s, "up")); got != "after a restart" {
		t.Fatalf("entry built in a spare kept across Close holds %q", got)
	}
}

// TestSpareNeverLinked checks that an entry whose data came by hard link
// is never kept as a spare, so that no other name of the file is ever
// overwritten, and that a large entry is not kept either.
func TestSpareNeverLinked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	src := filepath.Join(dir, "inbox-file")
	if err := os.WriteFile(src, []byte("linked"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other-name")
	if err := os.Link(src, other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnqueueFile("up", nil, src, true); err != nil {
		t.Fatal(err)
	}
	enqueueT(t, s, "up", strings.Repeat("y", maxSpareSize+1), nil)
	for range 2 {
		if err := claimT(t, s, "up").Done(); err != nil {
			t.Fatal(err)
		}
	}
	if got := listDir(t, filepath.Join(dir, spareName)); len(got) != 0 {
		t.Fatalf("spare/ holds %v: a linked or large entry was kept", got)
	}
	enqueueT(t, s, "up", "new bytes", nil)
	if b, err := os.ReadFile(other); err != nil || !bytes.Equal(b, []byte("linked")) {
		t.Fatalf("the other name of a spooled file holds %q, %v", b, err)
	}
}

// TestOpenKeepsWholeSpares checks that Open keeps the spares a dead
// owner left whole, and removes whatever else is in spare/: a directory
// with a file too many, one whose data has another name, a plain file.
func TestOpenKeepsWholeSpares(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	for range 4 {
		enqueueT(t, s, "up", "a", nil)
	}
	for range 4 {
		if err := claimT(t, s, "up").Done(); err != nil {
			t.Fatal(err)
		}
	}
	// As if the process died: the lock goes, the spares stay.
	s.lock.Close()
	spares := listDir(t, filepath.Join(dir, spareName))
	if len(spares) != 4 {
		t.Fatalf("spare/ holds %v, want four spares", spares)
	}
	if err := os.WriteFile(filepath.Join(dir, spareName, spares[0], metaTmpName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other-name")
	if err := os.Link(filepath.Join(dir, spareName, spares[1], dataName), other); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, spareName, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	if got, want := listDir(t, filepath.Join(dir, spareName)), spares[2:]; !slices.Equal(got, want) {
		t.Fatalf("spare/ holds %v after Open, want %v", got, want)
	}
	for _, data := range []string{"b", "c", "d"} {
		enqueueT(t, s, "up", data, nil)
	}
	if s.spareUses != 2 {
		t.Fatalf("%d entries built in spares, want 2", s.spareUses)
	}
	for _, want := range []string{"b", "c", "d"} {
		if got := readData(t, claimT(t, s, "up")); got != want {
			t.Fatalf("entry holds %q, want %q", got, want)
		}
	}
	if b, err := os.ReadFile(other); err != nil || string(b) != "a" {
		t.Fatalf("the other name of a spare's data holds %q, %v", b, err)
	}
}

// TestKeptMetas checks that the metas the index keeps for the entries
// this process spooled describe them as the disk does, are let go at
// the first claim (a retry reads the meta the failure wrote), and are
// counted back when a queue is dropped.
func TestKeptMetas(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{Backoff: Backoff{Base: time.Nanosecond, Max: time.Nanosecond}})
	id := enqueueT(t, s, "up", "a", "first")
	for range 3 {
		enqueueT(t, s, "drop", "b", nil)
	}
	if s.keptMetas != 4 {
		t.Fatalf("keptMetas = %d, want 4", s.keptMetas)
	}
	e := claimT(t, s, "up")
	var p string
	if err := e.Payload(&p); err != nil || e.ID() != id || p != "first" || e.Attempts() != 0 {
		t.Fatalf("claimed %s with payload %q, attempts %d, %v", e.ID(), p, e.Attempts(), err)
	}
	if err := e.Fail(errors.New("transient")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := s.Wait(ctx, "up")
	if err != nil {
		t.Fatal(err)
	}
	if e.Attempts() != 1 || e.LastError() != "transient" {
		t.Fatalf("retried entry: attempts %d, last error %q", e.Attempts(), e.LastError())
	}
	if _, _, err := s.DropQueue("drop"); err != nil {
		t.Fatal(err)
	}
	if s.keptMetas != 0 {
		t.Fatalf("keptMetas = %d after the claims and the drop, want 0", s.keptMetas)
	}
}

// TestSpareNotAfterReopenIfLinked checks that an entry Open finds with
// a data file of several names (a crash between EnqueueFile's link and
// its removal of the source leaves one) is not kept as a spare, and that
// one with a single name is.
func TestSpareNotAfterReopenIfLinked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	linked := enqueueT(t, s, "up", "shared", nil)
	enqueueT(t, s, "up", "alone", nil)
	other := filepath.Join(dir, "inbox-file")
	if err := os.Link(filepath.Join(readyPath(dir, "up", linked), dataName), other); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir, Options{})
	e := claimT(t, s, "up")
	if e.ID() != linked {
		t.Fatalf("claimed %s, want %s", e.ID(), linked)
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, filepath.Join(dir, spareName)); len(got) != 0 {
		t.Fatalf("spare/ holds %v: an entry whose data has another name was kept", got)
	}
	if err := claimT(t, s, "up").Done(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, filepath.Join(dir, spareName)); len(got) != 1 {
		t.Fatalf("spare/ holds %v, want the entry Open found with one name", got)
	}
	enqueueT(t, s, "up", "new bytes", nil)
	if b, err := os.ReadFile(other); err != nil || string(b) != "shared" {
		t.Fatalf("the other name of a spooled file holds %q, %v", b, err)
	}
}

// TestDoneAll finishes entries of two queues at once, among them one no
// longer held and one whose queue was dropped: the others are gone, the
// one not held is reported, the dropped one is no error.
func TestDoneAll(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	for range 3 {
		enqueueT(t, s, "a", "x", nil)
	}
	enqueueT(t, s, "b", "y", nil)
	enqueueT(t, s, "drop", "z", nil)
	a1, a2, b1, d1 := claimT(t, s, "a"), claimT(t, s, "a"), claimT(t, s, "b"), claimT(t, s, "drop")
	if err := s.DoneAll([]*Entry{a1, a2, b1}); err != nil {
		t.Fatal(err)
	}
	if s.Len("a") != 1 || s.Len("b") != 0 || s.Bytes() != 2 {
		t.Fatalf("after DoneAll: Len(a)=%d Len(b)=%d Bytes=%d", s.Len("a"), s.Len("b"), s.Bytes())
	}
	if got := listDir(t, filepath.Join(dir, spareName)); len(got) != 3 {
		t.Fatalf("spare/ holds %v, want the three finished entries", got)
	}
	if _, _, err := s.DropQueue("drop"); err != nil {
		t.Fatal(err)
	}
	a3 := claimT(t, s, "a")
	err := s.DoneAll([]*Entry{a1, d1, a3})
	if !errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), string(a1.ID())) {
		t.Fatalf("DoneAll with an entry already done = %v, want ErrNotHeld naming it", err)
	}
	if s.Len("a") != 0 || s.Bytes() != 0 {
		t.Fatalf("the held entry next to one not held: Len(a)=%d Bytes=%d", s.Len("a"), s.Bytes())
	}
	mustCheckOK(t, dir, time.Now())
}
