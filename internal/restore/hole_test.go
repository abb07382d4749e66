package restore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

func catalog(t *testing.T, store *memstore.Store) restore.Catalog {
	t.Helper()
	cat, err := restore.ReadCatalog(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// A change set deleted from the middle of a replica leaves the ones after
// it unreachable. The latest state is then not provable: a restore of it
// must fail, naming the hole and the last provable txid, and never quietly
// return the state before the hole as if it were the latest.
func TestHoleStopsLatestRestore(t *testing.T) {
	vs := versions(t, 12)
	store := memstore.New()
	publish(t, store, vs, 1, 1) // snapshot at 1, one segment per txid 2..13
	if err := store.Delete(context.Background(), segment.Key(3, 3)); err != nil {
		t.Fatal(err)
	}
	cat := catalog(t, store)

	_, err := cat.PlanTXID(0)
	var stopped *restore.StoppedError
	if !errors.As(err, &stopped) || stopped.TXID != 2 {
		t.Fatalf("plan of the latest state across a hole at txid 3: %v; want a StoppedError at txid 2", err)
	}
	for _, want := range []string{"txid 3 is missing", "up to txid 13", "every txid up to 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, _, err := restoreTo(t, store, 0, restore.Options{}); err == nil {
		t.Fatal("a restore of the latest state across a hole succeeded")
	}

	got, res, err := restoreTo(t, store, 2, restore.Options{})
	if err != nil || res.TXID != 2 || !bytes.Equal(got, vs[1]) {
		t.Fatalf("restore to txid 2, before the hole: txid %d, %v", res.TXID, err)
	}
	_, err = cat.PlanTXID(9)
	if !errors.As(err, &stopped) || stopped.TXID != 2 || !strings.Contains(err.Error(), "txid 3 is missing") {
		t.Fatalf("plan of txid 9, past the hole: %v", err)
	}
	if err := cat.Check(); err == nil {
		t.Fatal("Check passed a replica with a hole")
	}
	if got := cat.Stranded(); len(got) != 1 || got[0] != (restore.Range{First: 4, Last: 13}) {
		t.Fatalf("stranded = %v, want [{4 13}]", got)
	}
}

// A restore by time cannot prove which transaction was the last at or
// before a time that lies past a hole: the missing change sets may hold
// later ones. It must stop, not return the state before the hole.
func TestTimeRestoreStopsAtHole(t *testing.T) {
	vs := versions(t, 8)
	store := memstore.New()
	publish(t, store, vs, 1, 2) // segments 2-3, 4-5, 6-7, 8-9
	if err := store.Delete(context.Background(), segment.Key(4, 5)); err != nil {
		t.Fatal(err)
	}
	plan, err := catalog(t, store).PlanTime(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	if err == nil {
		out := filepath.Join(t.TempDir(), "out.db")
		var res restore.Result
		res, err = restore.ToFile(context.Background(), store, plan, out, restore.Options{Before: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err == nil {
			t.Fatalf("restore by a time past the hole returned txid %d", res.TXID)
		}
	}
	var stopped *restore.StoppedError
	if !errors.As(err, &stopped) || stopped.TXID != 3 {
		t.Fatalf("restore by a time past the hole: %v; want a StoppedError at txid 3", err)
	}
	// A time that a transaction before the hole proves passed is
	// answered exactly. One between txids 3 and 4 is not: txid 4 is
	// missing, and with it the time it was committed.
	before := time.Date(2026, 1, 1, 0, 0, 1, 500, time.UTC) // after txid 2, before txid 3
	plan, err = catalog(t, store).PlanTime(before)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "at.db")
	res, err := restore.ToFile(context.Background(), store, plan, out, restore.Options{Before: before})
	if err != nil || res.TXID != 2 {
		t.Fatalf("restore by a time before the hole: txid %d, %v; want 2", res.TXID, err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, vs[1]) {
		t.Fatal("restore by a time before the hole holds the wrong bytes")
	}
}

// A gap that ferry recorded, by re-establishing the chain with a newer
// snapshot after dropping change sets, is not damage: the latest state is
// restorable, and only the txids in the gap are not.
func TestRecordedGapIsNotDamage(t *testing.T) {
	vs := versions(t, 9)
	store := memstore.New()
	publish(t, store, vs, 1, 3) // segments 2-4, 5-7, 8-10
	ctx := context.Background()
	if err := store.Delete(ctx, segment.Key(5, 7)); err != nil {
		t.Fatal(err)
	}
	t8 := time.Date(2026, 1, 1, 0, 0, 8, 0, time.UTC)
	if _, _, err := snapshot.Write(ctx, store, bytes.NewReader(vs[7]), pageSize, uint32(len(vs[7])/pageSize), 8, t8, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	cat := catalog(t, store)
	if err := cat.Check(); err != nil {
		t.Fatalf("Check of a replica with a recorded gap: %v", err)
	}
	got, res, err := restoreTo(t, store, 0, restore.Options{})
	if err != nil || res.TXID != 10 || !bytes.Equal(got, vs[9]) {
		t.Fatalf("latest across a recorded gap: txid %d, %v; want 10", res.TXID, err)
	}
	if r := cat.Ranges(); len(r) != 2 || r[0] != (restore.Range{First: 1, Last: 4}) || r[1] != (restore.Range{First: 8, Last: 10}) {
		t.Fatalf("ranges %v, want [{1 4} {8 10}]", r)
	}
	if s := cat.Stranded(); len(s) != 0 {
		t.Fatalf("stranded %v in a replica whose latest state restores", s)
	}
}

// Change sets without any snapshot to apply them to: nothing restores,
// and the replica is not empty either, so the answer says what is there.
func TestSegmentsWithoutSnapshot(t *testing.T) {
	vs := versions(t, 6)
	store := memstore.New()
	publish(t, store, vs, 1, 3)
	if err := store.Delete(context.Background(), snapshot.ManifestKey(1)); err != nil {
		t.Fatal(err)
	}
	_, err := catalog(t, store).PlanTXID(0)
	if err == nil || errors.Is(err, restore.ErrNoSnapshot) || !strings.Contains(err.Error(), "no snapshot") || !strings.Contains(err.Error(), "up to txid 7") {
		t.Fatalf("plan from change sets alone: %v; want an error saying there is no snapshot for the change sets up to txid 7", err)
	}
	if err := catalog(t, memstore.New()).Check(); !errors.Is(err, restore.ErrEmpty) {
		t.Fatalf("Check of an empty replica: %v, want ErrEmpty", err)
	}
}

// A damaged manifest is still a state the replica claims to hold: the
// newest snapshot failing its checks must not make an older one pass for
// the latest.
func TestDamagedNewestManifest(t *testing.T) {
	vs := versions(t, 6)
	store := memstore.New()
	publish(t, store, vs[:4], 1, 3) // snapshot 1, segment 2-4
	ctx := context.Background()
	t6 := time.Date(2026, 1, 1, 0, 0, 6, 0, time.UTC)
	m, _, err := snapshot.Write(ctx, store, bytes.NewReader(vs[5]), pageSize, uint32(len(vs[5])/pageSize), 6, t6, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := store.Get(ctx, m.Key(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	b := buf.Bytes()
	b[10] ^= 0xff
	store.Corrupt(m.Key(), b)

	_, err = catalog(t, store).PlanTXID(0)
	var stopped *restore.StoppedError
	if !errors.As(err, &stopped) || stopped.TXID != 4 || !strings.Contains(err.Error(), m.Key()) {
		t.Fatalf("plan of the latest with the newest manifest damaged: %v; want a StoppedError at txid 4 naming %s", err, m.Key())
	}
	if _, res, err := restoreTo(t, store, 4, restore.Options{}); err != nil || res.TXID != 4 {
		t.Fatalf("restore to txid 4: %v", err)
	}
}

// Without takes objects a deeper check found damaged out of the chains,
// and what they held counts as stranded rather than restorable.
func TestWithoutDamagedObjects(t *testing.T) {
	vs := versions(t, 9)
	store := memstore.New()
	publish(t, store, vs, 1, 3) // segments 2-4, 5-7, 8-10
	bad := segment.Key(5, 7)
	cat := catalog(t, store).Without(map[string]string{bad: "corrupt: checksum mismatch"})
	if r := cat.Ranges(); len(r) != 1 || r[0] != (restore.Range{First: 1, Last: 4}) {
		t.Fatalf("ranges without %s: %v, want [{1 4}]", bad, r)
	}
	err := cat.Check()
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "corrupt: checksum mismatch") {
		t.Fatalf("Check without %s: %v; want it named with its reason", bad, err)
	}
	if s := cat.Stranded(); len(s) != 1 || s[0] != (restore.Range{First: 5, Last: 10}) {
		t.Fatalf("stranded %v, want [{5 10}]", s)
	}
}
