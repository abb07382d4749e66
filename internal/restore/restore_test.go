package restore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

const pageSize = 4096

// versions builds a real SQLite database through n transactions and
// returns the file's bytes after each (index 0 is before the first).
func versions(t *testing.T, n int) [][]byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(DELETE)&_pragma=page_size(4096)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	read := func() []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	out := [][]byte{read()}
	for i := range n {
		var stmt string
		switch i % 4 {
		case 0, 1:
			stmt = fmt.Sprintf("INSERT INTO t (v) VALUES (randomblob(%d))", 100+i*900)
		case 2:
			stmt = "UPDATE t SET v = randomblob(3000) WHERE id % 2 = 1"
		case 3:
			stmt = "DELETE FROM t WHERE id = (SELECT min(id) FROM t)"
		}
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
		out = append(out, read())
	}
	return out
}

// publish stores versions[0] as a snapshot at txid base and each later
// version as one transaction of a segment, splitting the transactions
// into segments of per transactions.
func publish(t *testing.T, store objstore.Store, vs [][]byte, base uint64, per int) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := snapshot.Write(ctx, store, bytes.NewReader(vs[0]), pageSize, uint32(len(vs[0])/pageSize), base, t0, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	for start := 1; start < len(vs); start += per {
		end := min(start+per-1, len(vs)-1)
		var buf bytes.Buffer
		w, err := segment.NewWriter(&buf, segment.Header{PageSize: pageSize, First: base + uint64(start), Last: base + uint64(end)})
		if err != nil {
			t.Fatal(err)
		}
		for i := start; i <= end; i++ {
			prev, cur := vs[i-1], vs[i]
			if err := w.Begin(base+uint64(i), t0.Add(time.Duration(i)*time.Second), uint32(len(cur)/pageSize)); err != nil {
				t.Fatal(err)
			}
			for p := 0; p*pageSize < len(cur); p++ {
				page := cur[p*pageSize : (p+1)*pageSize]
				if (p+1)*pageSize > len(prev) || !bytes.Equal(page, prev[p*pageSize:(p+1)*pageSize]) {
					if err := w.Page(uint32(p+1), page); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		key := segment.Key(base+uint64(start), base+uint64(end))
		if _, err := store.Put(ctx, key, bytes.NewReader(buf.Bytes()), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// newestPlan plans the restore of the newest state store holds.
func newestPlan(t *testing.T, store objstore.Store) restore.Plan {
	t.Helper()
	cat, err := restore.ReadCatalog(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(0)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func restoreTo(t *testing.T, store objstore.Store, txid uint64, o restore.Options) ([]byte, restore.Result, error) {
	t.Helper()
	cat, err := restore.ReadCatalog(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(txid)
	if err != nil {
		return nil, restore.Result{}, err
	}
	out := filepath.Join(t.TempDir(), "out.db")
	res, err := restore.ToFile(context.Background(), store, plan, out, o)
	if err != nil {
		return nil, res, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b, res, nil
}

func TestRestoreEveryTransaction(t *testing.T) {
	vs := versions(t, 24)
	store := memstore.New()
	publish(t, store, vs, 10, 5)
	for i := range vs {
		txid := uint64(10 + i)
		got, res, err := restoreTo(t, store, txid, restore.Options{Parallelism: 3})
		if err != nil {
			t.Fatalf("restore to txid %d: %v", txid, err)
		}
		if res.TXID != txid || !bytes.Equal(got, vs[i]) {
			t.Fatalf("restore to txid %d: result txid %d, %d bytes; want the %d bytes of version %d", txid, res.TXID, len(got), len(vs[i]), i)
		}
	}
	latest, res, err := restoreTo(t, store, 0, restore.Options{})
	if err != nil || res.TXID != 34 || !bytes.Equal(latest, vs[24]) {
		t.Fatalf("latest: txid %d, err %v", res.TXID, err)
	}
}

func TestRestoreByTime(t *testing.T) {
	vs := versions(t, 8)
	store := memstore.New()
	publish(t, store, vs, 1, 3)
	plan := newestPlan(t, store)
	before := time.Date(2026, 1, 1, 0, 0, 5, 500, time.UTC) // after txn 5, before txn 6
	out := filepath.Join(t.TempDir(), "at.db")
	res, err := restore.ToFile(context.Background(), store, plan, out, restore.Options{Before: before})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if res.TXID != 6 || !bytes.Equal(got, vs[5]) {
		t.Fatalf("restore before %v: txid %d; want txid 6 (version 5)", before, res.TXID)
	}
}

func TestGapsAndRanges(t *testing.T) {
	vs := versions(t, 9)
	store := memstore.New()
	publish(t, store, vs, 1, 3) // segments 2-4, 5-7, 8-10
	if err := store.Delete(context.Background(), segment.Key(5, 7)); err != nil {
		t.Fatal(err)
	}
	cat, err := restore.ReadCatalog(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cat.Ranges()); got != "[{1 4}]" {
		t.Fatalf("ranges with segment 5-7 missing = %s, want [{1 4}]", got)
	}
	if _, err := cat.PlanTXID(8); err == nil || !strings.Contains(err.Error(), "txids 5-7 are missing") {
		t.Fatalf("plan past a gap: %v", err)
	}
	if _, err := cat.PlanTXID(11); err == nil || !strings.Contains(err.Error(), "restorable: 1-4") {
		t.Fatalf("plan past everything the replica holds: %v", err)
	}
	// Change set 8-10 lies past the hole: the latest state is not
	// provable, and txid 4 is not it.
	var stopped *restore.StoppedError
	if _, res, err := restoreTo(t, store, 0, restore.Options{}); !errors.As(err, &stopped) || stopped.TXID != 4 {
		t.Fatalf("latest with a hole: txid %d, %v; want a StoppedError at txid 4", res.TXID, err)
	}
	if _, res, err := restoreTo(t, store, 4, restore.Options{}); err != nil || res.TXID != 4 {
		t.Fatalf("txid 4, before the hole: txid %d, %v", res.TXID, err)
	}
}

func TestCorruptSegmentFailsWithoutOutput(t *testing.T) {
	vs := versions(t, 6)
	store := memstore.New()
	publish(t, store, vs, 1, 3)
	key := segment.Key(5, 7)
	rc, _, _ := store.Get(context.Background(), key, nil)
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	b := buf.Bytes()
	b[len(b)/2] ^= 0x40
	store.Corrupt(key, b)
	cat, _ := restore.ReadCatalog(context.Background(), store)
	plan, err := cat.PlanTXID(0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.db")
	_, err = restore.ToFile(context.Background(), store, plan, out, restore.Options{})
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("restore through a bit-flipped segment: %v; want an error naming %s", err, key)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a failed restore left files behind: %v", entries)
	}
	// The transactions before the damage are still restorable, exactly.
	got, res, err := restoreTo(t, store, 4, restore.Options{})
	if err != nil || res.TXID != 4 || !bytes.Equal(got, vs[3]) {
		t.Fatalf("restore to txid 4 before the damage: %v", err)
	}
}

// A snapshot whose chunks all match their addresses can still hold a
// database SQLite rejects (the source was damaged before it was read).
// Such a restore fails, saying so, and leaves nothing at the output or
// beside it.
func TestDatabaseSQLiteRejectsIsNotWritten(t *testing.T) {
	vs := versions(t, 8)
	db := bytes.Clone(vs[len(vs)-1])
	// Page 2 is table t's root; zeros there are no b-tree page.
	clear(db[pageSize : 2*pageSize])
	store := memstore.New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := snapshot.Write(context.Background(), store, bytes.NewReader(db), pageSize, uint32(len(db)/pageSize), 1, t0, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	plan := newestPlan(t, store)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.db")
	_, err := restore.ToFile(context.Background(), store, plan, out, restore.Options{})
	if err == nil || !strings.Contains(err.Error(), "fails SQLite's check") {
		t.Fatalf("restore of a damaged database: %v; want SQLite's check to refuse it", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused restore left files behind: %v", entries)
	}
}

func TestNoSnapshot(t *testing.T) {
	cat, err := restore.ReadCatalog(context.Background(), memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.PlanTXID(0); err != restore.ErrNoSnapshot {
		t.Fatalf("empty replica: %v", err)
	}
}
