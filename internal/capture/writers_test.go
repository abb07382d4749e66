package capture

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/verify"
)

// commitApp commits one change to an appSchema database, counting k in
// app_meta.
func commitApp(t *testing.T, app *sql.DB, k int) {
	t.Helper()
	tx, err := app.Begin()
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec("INSERT INTO items(name, qty) VALUES(?, ?)", fmt.Sprint("item ", k), k)
	tx.Exec("UPDATE app_meta SET k=?", k)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestSecondWriterStops runs two replicators, without a lease, on one
// replica: the second is a database restored from the replica that goes
// on writing while the first does too (a failover that left the old
// primary running). Their change sets after the restore point collide on
// the first one's keys; the second stops with one clear error naming the
// first, and the first goes on with a chain that still restores.
func TestSecondWriterStops(t *testing.T) {
	needCLI(t)
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	dbA := newDB(t, dirA, 4096, appSchema...)
	store := memstore.New()
	const url = "mem://shared"
	a := startReplicator(t, testOptions(dirA, dbA, map[string]objstore.Store{url: store}))
	appA := openApp(t, dbA)
	for k := 1; k <= 3; k++ {
		commitApp(t, appA, k)
	}
	top := a.sync(t)

	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(0)
	if err != nil {
		t.Fatal(err)
	}
	dbB := filepath.Join(dirB, "app.db")
	res, err := restore.ToFile(ctx, store, plan, dbB, restore.Options{})
	if err != nil || res.TXID != top {
		t.Fatalf("restore: %+v, %v; want txid %d", res, err, top)
	}
	oB := testOptions(dirB, dbB, map[string]objstore.Store{url: store})
	oB.Continues = &Continuation{URL: url, TXID: res.TXID, Time: res.Time, Snapshot: plan.Snapshot.TXID}
	b := startReplicator(t, oB)
	if got := b.sync(t); got != top {
		t.Fatalf("the second replicator starts at txid %d, want %d", got, top)
	}

	// The first writer takes txid top+1's key; the second then wants it.
	commitApp(t, appA, 4)
	a.sync(t)
	appB := openApp(t, dbB)
	commitApp(t, appB, 100)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = b.Sync(sctx)
	if !errors.Is(err, ErrOtherWriter) {
		t.Fatalf("the second writer's Sync = %v, want ErrOtherWriter", err)
	}
	key := layout.ChangeSetKey(top + 1)
	for _, want := range []string{key, a.writer.id, url} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	st := b.Status().Targets[0]
	if !st.Stopped || st.LastError == "" || !strings.Contains(st.LastError, a.writer.id) {
		t.Errorf("the second writer's target status %+v does not show the stop", st)
	}
	// Stopped for good: nothing more of the second writer's is stored,
	// and a Sync fails at once rather than waiting.
	commitApp(t, appB, 101)
	if _, err := b.Sync(sctx); !errors.Is(err, ErrOtherWriter) {
		t.Fatalf("a later Sync of the second writer = %v", err)
	}

	// The first goes on.
	for k := 5; k <= 8; k++ {
		commitApp(t, appA, k)
	}
	last := a.sync(t)
	if st := a.Status().Targets[0]; st.Stopped || st.Replicated != last {
		t.Fatalf("the first writer's target: %+v", st)
	}
	out, got := restoreAt(t, store, 0, dirA)
	if got.TXID != last || sha3(t, out) != sha3(t, dbA) {
		t.Fatalf("restored txid %d, want %d, the first writer's database", got.TXID, last)
	}
	rep, err := verify.Run(ctx, store, true, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	l, err := layout.Read(ctx, store, layout.Snapshots|layout.Segments, segment.Heads(store))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(l.Segments, layout.Segment{Key: l.Snapshots[len(l.Snapshots)-1].Key}) {
		info, err := store.Head(ctx, s.Key)
		if err != nil {
			t.Fatal(err)
		}
		if b.writer.ours(info.Metadata) {
			t.Errorf("%s was stored by the writer that stopped", s.Key)
		}
		if !a.writer.ours(info.Metadata) {
			t.Errorf("%s does not name its writer: %v", s.Key, info.Metadata)
		}
	}
}

// loseAnswers stores a Put and then reports that no answer came, once per
// key, as a connection cut after the request reached the store would.
type loseAnswers struct {
	objstore.Store
	mu   sync.Mutex
	lost map[string]bool
}

func (s *loseAnswers) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	info, err := s.Store.Put(ctx, key, body, opts)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.lost[key] {
		return info, err
	}
	s.lost[key] = true
	return objstore.Info{}, &objstore.Error{Op: "put", Key: key, StatusCode: 503, Err: errors.New("the answer was lost")}
}

func testSegment(t *testing.T, first, last uint64, tag byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{PageSize: 512, First: first, Last: last})
	if err != nil {
		t.Fatal(err)
	}
	for txid := first; txid <= last; txid++ {
		if err := w.Begin(txid, time.Unix(int64(tag), 0), 1); err != nil {
			t.Fatal(err)
		}
		if err := w.Page(1, bytes.Repeat([]byte{byte(txid)}, 512)); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testChained(t *testing.T, store objstore.Store, id string) *chainedStore {
	t.Helper()
	w, err := newWriterID(id)
	if err != nil {
		t.Fatal(err)
	}
	p := newProgress([]string{"mem://x"}, slog.New(slog.DiscardHandler))
	return &chainedStore{Store: store, url: "mem://x", p: p, writer: w, tmpDir: t.TempDir()}
}

// A create-only Put whose answer was lost is retried, and the retry finds
// the key taken by its own first attempt: that is success, not another
// writer.
func TestCreateOnlyRetryAfterLostAnswer(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	store := objstore.WithRetry(&loseAnswers{Store: mem, lost: map[string]bool{}}, objstore.RetryPolicy{Base: time.Millisecond, Max: time.Millisecond})
	cs := testChained(t, store, "")
	data := testSegment(t, 5, 7, 1)
	key := layout.ChangeSetKey(5)
	if _, err := cs.Put(ctx, key, bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		t.Fatalf("Put after a lost answer: %v", err)
	}
	if err := cs.p.stopped(cs.url); err != nil {
		t.Fatalf("the target stopped: %v", err)
	}
	info, err := mem.Head(ctx, key)
	if err != nil || info.Size != int64(len(data)) || !cs.writer.ours(info.Metadata) {
		t.Fatalf("stored %+v, %v", info, err)
	}

	// The same key from another writer is a conflict, and stops the
	// target.
	other := testChained(t, mem, "")
	_, err = other.Put(ctx, key, bytes.NewReader(testSegment(t, 5, 9, 2)), objstore.PutOptions{})
	if !errors.Is(err, ErrOtherWriter) || !objstore.IsPreconditionFailed(err) || !strings.Contains(err.Error(), cs.writer.id) {
		t.Fatalf("Put over another writer's change set: %v", err)
	}
	if err := other.p.stopped(other.url); !errors.Is(err, ErrOtherWriter) {
		t.Fatalf("the target did not stop: %v", err)
	}
	if _, err := other.Put(ctx, layout.ChangeSetKey(10), bytes.NewReader(testSegment(t, 10, 10, 2)), objstore.PutOptions{}); !errors.Is(err, ErrOtherWriter) {
		t.Fatalf("a stopped target took a Put: %v", err)
	}
}

// After a crash the replicator captures again transactions it had
// already spooled, from the same first txid, with other commit times and
// another last txid. Its own change set under that key stands for the new
// one as far as it reaches; the rest is stored from the txid after, so
// that first-only keys still chain.
func TestOwnChangeSetStandsIn(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	cs := testChained(t, mem, "")
	if _, err := cs.Put(ctx, layout.ChangeSetKey(5), bytes.NewReader(testSegment(t, 5, 6, 1)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	again := testChained(t, mem, cs.writer.id) // the same replicator, restarted
	data := testSegment(t, 5, 9, 2)
	info, err := again.Put(ctx, layout.ChangeSetKey(5), bytes.NewReader(data), objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The uploader confirms with a Head: it must see what it sent.
	head, err := again.Head(ctx, layout.ChangeSetKey(5))
	if err != nil || head.Size != int64(len(data)) || head.SHA256 != info.SHA256 {
		t.Fatalf("Head after the stand-in = %+v, %v; Put said %+v", head, err, info)
	}
	l, err := layout.Read(ctx, mem, layout.Segments, segment.Heads(mem))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Segments) != 2 || l.Segments[0].Last != 6 || l.Segments[1].Key != layout.ChangeSetKey(7) || l.Segments[1].Last != 9 || len(l.Foreign) != 0 {
		t.Fatalf("listing %+v, want 5-6 and 7-9 under first-only keys", l)
	}
	// A shorter one is covered whole.
	if _, err := again.Put(ctx, layout.ChangeSetKey(7), bytes.NewReader(testSegment(t, 7, 8, 3)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := again.p.stopped(again.url); err != nil {
		t.Fatalf("the target stopped: %v", err)
	}
}

// A break marker whose key a change set of ours took after all (one in
// flight when its backlog was dropped) moves to the txid after it, so
// that a follower reading that change set still finds the marker; not
// when the change set reaches the snapshot that carries the target on.
func TestBreakMarkerMovesPastALateChangeSet(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	cs := testChained(t, mem, "")
	cs.p.targets[cs.url].holdAfter = 20
	if _, err := cs.Put(ctx, layout.ChangeSetKey(5), bytes.NewReader(testSegment(t, 5, 7, 1)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Put(ctx, layout.ChangeSetKey(5), bytes.NewReader(segment.MarshalBreak(5)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := layout.Read(ctx, mem, layout.Segments, segment.Heads(mem))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Segments) != 1 || len(l.Breaks) != 1 || l.Breaks[0].TXID != 8 {
		t.Fatalf("listing %+v; want the change set 5-7 and a marker at 8", l)
	}

	cs.p.targets[cs.url].holdAfter = 9
	if _, err := cs.Put(ctx, layout.ChangeSetKey(9), bytes.NewReader(testSegment(t, 9, 9, 1)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Put(ctx, layout.ChangeSetKey(9), bytes.NewReader(segment.MarshalBreak(9)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Head(ctx, layout.ChangeSetKey(10)); !objstore.IsNotFound(err) {
		t.Fatalf("a marker at 10, where change sets after the snapshot at 9 go: %v", err)
	}
}

// refuseOnce refuses, for good, the first change set put after it is
// armed, as a store refuses an object its policy forbids.
type refuseOnce struct {
	objstore.Store
	mu      sync.Mutex
	armed   bool
	refused string
	done    chan struct{}
}

func (s *refuseOnce) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	s.mu.Lock()
	refuse := s.armed && s.refused == ""
	if _, err := layout.ParseChangeSetKey(key); refuse && err == nil {
		s.refused = key
		close(s.done)
		s.mu.Unlock()
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, StatusCode: 403, Err: errors.New("access denied")}
	}
	s.mu.Unlock()
	return s.Store.Put(ctx, key, body, opts)
}

// TestBreakMarkerOnRefusedChangeSet checks that a change set refused for
// good ends the target's chain with a break marker under the key of the
// txid the chain lacks, which a follower waiting there reads with one GET,
// and that the replica still restores and verifies.
func TestBreakMarkerOnRefusedChangeSet(t *testing.T) {
	needCLI(t)
	ctx := context.Background()
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	mem := memstore.New()
	store := &refuseOnce{Store: mem, done: make(chan struct{})}
	o := testOptions(dir, db, map[string]objstore.Store{"mem://a": store})
	o.failedCheck = 10 * time.Millisecond
	r := startReplicator(t, o)
	app := openApp(t, db)
	commitApp(t, app, 1)
	before := r.sync(t)

	store.mu.Lock()
	store.armed = true
	store.mu.Unlock()
	commitApp(t, app, 2)
	<-store.done
	key := store.refused
	if key != layout.ChangeSetKey(before+1) {
		t.Fatalf("refused %s, want the change set after txid %d", key, before)
	}
	// The snapshot that carries the target on, then a change set behind
	// the marker in the target's ordered queue: once it is confirmed, so
	// is the marker.
	r.sync(t)
	commitApp(t, app, 3)
	last := r.sync(t)

	rc, _, err := mem.Get(ctx, key, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, segment.MarshalBreak(before+1)) {
		t.Fatalf("GET %s = %x, %v; want the break marker of txid %d", key, got, err, before+1)
	}
	l, err := layout.Read(ctx, mem, layout.All, segment.Heads(mem))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Breaks) != 1 || l.Breaks[0].Key != key || len(l.Foreign) != 0 {
		t.Fatalf("listing: breaks %+v, foreign %+v", l.Breaks, l.Foreign)
	}
	rep, err := verify.Run(ctx, mem, true, nil)
	if err != nil || !rep.OK() || rep.Breaks != 1 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	out, res := restoreAt(t, mem, 0, dir)
	if res.TXID != last || marker(t, out) != 3 {
		t.Fatalf("restored txid %d (want %d), commit %d (want 3)", res.TXID, last, marker(t, out))
	}
	// A follower that read the marker goes on from a snapshot past the
	// end of the chain.
	if n := l.Snapshots[len(l.Snapshots)-1].TXID; n <= before {
		t.Errorf("newest snapshot at txid %d; the chain ended at %d", n, before)
	}
}

// TestBreakMarkerOnLogBreak checks the marker of a chain that ends
// because the log broke continuity while ferry was stopped: a follower
// that holds the last txid before the break finds, under the key of the
// next, the marker sending it to the snapshot that carries on.
func TestBreakMarkerOnLogBreak(t *testing.T) {
	needCLI(t)
	ctx := context.Background()
	dir := t.TempDir()
	db := newDB(t, dir, 4096, appSchema...)
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://a": store})
	r := startReplicator(t, o)
	r.sync(t)
	app := openApp(t, db)
	for k := 1; k <= 5; k++ {
		commitApp(t, app, k)
	}
	end := r.sync(t)
	r.stop()

	for _, q := range []string{"PRAGMA journal_mode=DELETE", "PRAGMA page_size=8192", "VACUUM", "PRAGMA journal_mode=WAL"} {
		if _, err := app.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r = startReplicator(t, o)
	r.sync(t)
	// A change set behind the marker in the target's ordered queue: once
	// it is confirmed, so is the marker.
	commitApp(t, app, 6)
	last := r.sync(t)

	rc, _, err := store.Get(ctx, layout.ChangeSetKey(end+1), nil)
	if err != nil {
		t.Fatalf("GET the key after the chain's end: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, segment.MarshalBreak(end+1)) {
		t.Fatalf("GET %s = %x, %v; want the break marker", layout.ChangeSetKey(end+1), got, err)
	}
	out, res := restoreAt(t, store, 0, dir)
	if res.TXID != last || marker(t, out) != 6 {
		t.Fatalf("restored txid %d (want %d), commit %d (want 6)", res.TXID, last, marker(t, out))
	}
}
