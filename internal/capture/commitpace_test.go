package capture

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestPaceOwnWatch checks the pace of a capture that watches the log
// itself: events that come faster than busyStepGap make it busy, which
// lets go of the watch (its goroutine ends) and steps every busyStepGap;
// quietAfter without a commit makes it watch again, and the new watch
// reports the next write of the log.
func TestPaceOwnWatch(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	r := &Replicator{o: Options{DBPath: db, Log: slog.New(slog.DiscardHandler)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	p := newPace(ctx, &wg, r)
	if p.busy || p.events == nil || p.wait(time.Second) != time.Second {
		t.Fatalf("a new pace: busy %v, events %v, wait %v", p.busy, p.events != nil, p.wait(time.Second))
	}
	if p.event(time.Now().Add(-busyStepGap)) {
		t.Fatal("an event busyStepGap after the last step made the capture busy")
	}
	if !p.event(time.Now()) {
		t.Fatal("an event right after a step did not make the capture busy")
	}
	if p.events != nil || p.wait(time.Second) != busyStepGap {
		t.Fatalf("busy: events %v, wait %v", p.events != nil, p.wait(time.Second))
	}
	// The watch's goroutine is the only one counted: it ended.
	wg.Wait()

	r.lastCommit = time.Now()
	p.stepped(r.lastCommit.Add(quietAfter / 2))
	if !p.busy {
		t.Fatal("the capture stopped being busy with a commit quietAfter/2 ago")
	}
	p.stepped(r.lastCommit.Add(quietAfter))
	if p.busy || p.events == nil {
		t.Fatalf("quietAfter without a commit: busy %v, events %v", p.busy, p.events != nil)
	}
	if err := os.WriteFile(db+"-wal", []byte("frames"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.events:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch taken again reported no write of the log")
	}
	cancel()
	wg.Wait()
}

// TestPaceGivenEvents checks the pace of a capture whose events come from
// the caller's watch, which it must not stop: busy, it only does not
// listen to them.
func TestPaceGivenEvents(t *testing.T) {
	given := make(chan struct{}, 1)
	r := &Replicator{o: Options{DBPath: "/nonexistent/app.db", Events: given}}
	var wg sync.WaitGroup
	p := newPace(context.Background(), &wg, r)
	if p.events != (<-chan struct{})(given) {
		t.Fatal("the pace does not listen to the caller's events")
	}
	if !p.event(time.Now()) || p.events != nil || p.stop != nil {
		t.Fatalf("busy: busy %v, events %v", p.busy, p.events != nil)
	}
	p.stepped(time.Now())
	if p.busy || p.events != (<-chan struct{})(given) {
		t.Fatalf("no commit ever read: busy %v, listening again %v", p.busy, p.events != nil)
	}
}
