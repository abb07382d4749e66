package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReclaimAfterDeadOwner(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	a := enqueueT(t, s, "up", "a", "v1")
	enqueueT(t, s, "up", "b", nil)
	e := claimT(t, s, "up")
	if err := e.UpdatePayload("v2"); err != nil {
		t.Fatal(err)
	}
	claimT(t, s, "up")
	// A stale staging dir, as a crash mid-Enqueue leaves it.
	os.MkdirAll(filepath.Join(dir, tmpName, "00000000000000000001-00000000"), 0o700)
	s.Close() // as if the process died holding both
	if err := e.Done(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Done after Close = %v", err)
	}

	s = openT(t, dir, Options{})
	tmpEmpty(t, dir)
	if s.Len("up") != 2 || len(listDir(t, checkoutDir(dir, "up"))) != 0 {
		t.Fatalf("reclaim: Len=%d checkout=%v", s.Len("up"), listDir(t, checkoutDir(dir, "up")))
	}
	e = claimT(t, s, "up")
	var p string
	if err := e.Payload(&p); err != nil || e.ID() != a || p != "v2" {
		t.Fatalf("reclaimed %s with payload %q, %v", e.ID(), p, err)
	}
	mustCheckOK(t, dir, time.Now())
}

func TestDropQueue(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	for range 5 {
		enqueueT(t, s, "seg", "1234", nil)
	}
	enqueueT(t, s, "snap", "keep", nil)
	held1, held2 := claimT(t, s, "seg"), claimT(t, s, "seg")
	n, b, err := s.DropQueue("seg")
	if err != nil || n != 5 || b != 20 {
		t.Fatalf("DropQueue = %d, %d, %v", n, b, err)
	}
	if err := held1.Done(); err != nil {
		t.Fatalf("Done of a dropped entry = %v, want nil", err)
	}
	if err := held2.Fail(errors.New("x")); !errors.Is(err, ErrDropped) {
		t.Fatalf("Fail of a dropped entry = %v, want ErrDropped", err)
	}
	if s.Len("seg") != 0 || s.Bytes() != 4 {
		t.Fatalf("Len=%d Bytes=%d", s.Len("seg"), s.Bytes())
	}
	if n, b, err := s.DropQueue("seg"); n != 0 || b != 0 || err != nil {
		t.Fatalf("second DropQueue = %d, %d, %v", n, b, err)
	}
	enqueueT(t, s, "seg", "after", nil)
	tmpEmpty(t, dir)
	mustCheckOK(t, dir, time.Now())
	s.Close()
	s = openT(t, dir, Options{})
	if s.Len("seg") != 1 || s.Len("snap") != 1 || s.Bytes() != 9 {
		t.Fatalf("after reopen Len seg=%d snap=%d Bytes=%d", s.Len("seg"), s.Len("snap"), s.Bytes())
	}
}

func TestOrderedQueue(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := openT(t, dir, Options{Now: clk.Now, Ordered: []string{"seg"}})
	var ids []ID
	for _, d := range []string{"1", "2", "3"} {
		ids = append(ids, enqueueT(t, s, "seg", d, nil))
		enqueueT(t, s, "plain", d, nil)
	}
	// A plain queue hands out the next entry while the head is in backoff.
	p := claimT(t, s, "plain")
	p.Fail(errors.New("503"))
	if claimT(t, s, "plain").ID() == p.ID() {
		t.Fatal("plain queue handed out an entry in backoff")
	}

	head := claimT(t, s, "seg")
	if head.ID() != ids[0] {
		t.Fatalf("head is %s", head.ID())
	}
	if next := wantEmpty(t, s, "seg").Next; !next.IsZero() {
		t.Fatalf("ordered queue with its head out: next %v, want zero", next)
	}
	if err := head.Fail(errors.New("503")); err != nil {
		t.Fatal(err)
	}
	next := wantEmpty(t, s, "seg").Next // not the second entry: it must wait
	clk.Set(next)
	head = claimT(t, s, "seg")
	if head.ID() != ids[0] || head.Attempts() != 1 {
		t.Fatalf("after backoff claimed %s attempts %d", head.ID(), head.Attempts())
	}
	head.Done()
	for _, id := range ids[1:] {
		e := claimT(t, s, "seg")
		if e.ID() != id {
			t.Fatalf("claimed %s, want %s", e.ID(), id)
		}
		wantEmpty(t, s, "seg")
		e.Done()
	}
}

func TestWait(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	got := make(chan *Entry)
	go func() {
		e, err := s.Wait(context.Background(), "up")
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	time.Sleep(20 * time.Millisecond)
	id := enqueueT(t, s, "up", "x", nil)
	select {
	case e := <-got:
		if e.ID() != id {
			t.Fatalf("Wait returned %s", e.ID())
		}
		// A backoff wakes a waiter when it ends.
		if err := e.Fail(errors.New("x")); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake for an enqueue")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e, err := s.Wait(ctx, "up"); err != nil || e.ID() != id {
		t.Fatalf("Wait for a backoff = %v", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Wait(ctx, "none"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past its deadline = %v", err)
	}
	done := make(chan error)
	go func() {
		_, err := s.Wait(context.Background(), "none")
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait across Close = %v", err)
	}
}

func TestUnreadableMetaIsNeverHandedOut(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{Ordered: []string{"seg"}})
	bad := enqueueT(t, s, "seg", "1", nil)
	good := enqueueT(t, s, "seg", "2", nil)
	worse := enqueueT(t, s, "seg", "3", nil)
	// Reopened, so that the index holds none of the metas this process
	// wrote (it describes those from memory) and reads each back.
	s.Close()
	s = openT(t, dir, Options{Ordered: []string{"seg"}})
	// Corrupted under a running spool, and under a closed one.
	os.WriteFile(filepath.Join(readyPath(dir, "seg", bad), metaName), []byte("{not json"), 0o600)
	e := claimT(t, s, "seg")
	if e.ID() != good {
		t.Fatalf("claimed %s, want %s past the corrupt head", e.ID(), good)
	}
	e.Done()
	s.Close()
	os.WriteFile(filepath.Join(readyPath(dir, "seg", worse), metaName), []byte(`{"version":99}`), 0o600)
	s = openT(t, dir, Options{})
	wantEmpty(t, s, "seg")
	if s.Bytes() != 2 {
		t.Fatalf("Bytes = %d: unreadable entries still take space", s.Bytes())
	}
	r, err := Check(dir, Limits{}, time.Now())
	if err != nil || len(r.Problems) != 2 || r.Problems[0].Kind != KindCorrupt || r.Problems[1].Kind != KindCorrupt {
		t.Fatalf("Check = %+v, %v", r.Problems, err)
	}
}
