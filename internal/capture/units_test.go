package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/wal"
)

// TestBatchRoundTrip checks that any sequence of transactions written to
// a batch, with rollbacks of half-written ones in between, comes out of
// writeSegment as exactly the committed ones, whether the batch held them
// in memory, in its file, or partly in each.
func TestBatchRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		// Small bounds make a batch spill to its file from the start, part
		// way, or for a transaction past the most it holds in memory.
		mem := newMemoryBudget(rapid.Int64Range(0, 256<<10).Draw(rt, "memory"))
		b, err := openBatch(dir, rapid.SampledFrom([]int64{0, 8 << 10, 64 << 10}).Draw(rt, "maxBytes"), mem)
		if err != nil {
			rt.Fatal(err)
		}
		useSmallChunks(rt, b)
		defer func() {
			b.close()
			if n := mem.inUse(); n != 0 {
				rt.Fatalf("a closed batch still holds %d bytes of memory", n)
			}
		}()
		ps := rapid.SampledFrom([]int{512, 1024, 4096}).Draw(rt, "pageSize")
		type page struct {
			pgno uint32
			data []byte
		}
		type txn struct {
			txid   uint64
			at     time.Time
			dbSize uint32
			pages  []page
		}
		var want []txn
		txid := rapid.Uint64Range(1, 1<<40).Draw(rt, "first")
		for i := range rapid.IntRange(1, 8).Draw(rt, "txns") {
			dbSize := rapid.Uint32Range(1, 50).Draw(rt, "dbSize")
			pgnos := rapid.SliceOfNDistinct(rapid.Uint32Range(1, dbSize), 0, 6, rapid.ID[uint32]).Draw(rt, "pgnos")
			slices.Sort(pgnos)
			tx := txn{txid: txid, at: time.Unix(0, int64(i)*1e9+7).UTC(), dbSize: dbSize}
			for _, p := range pgnos {
				tx.pages = append(tx.pages, page{p, bytes.Repeat([]byte{byte(p), byte(i)}, ps/2)})
			}
			abandon := rapid.Bool().Draw(rt, "abandon")
			mark := b.mark()
			if err := b.begin(tx.txid, tx.at, tx.dbSize, len(tx.pages), ps); err != nil {
				rt.Fatal(err)
			}
			for j, p := range tx.pages {
				if abandon && j == len(tx.pages)/2 {
					break
				}
				if err := b.page(p.pgno, p.data); err != nil {
					rt.Fatal(err)
				}
			}
			if abandon {
				if err := b.rollback(mark); err != nil {
					rt.Fatal(err)
				}
				continue
			}
			b.commit(tx.txid)
			want = append(want, tx)
			txid++
		}
		if len(want) == 0 {
			return
		}
		var out bytes.Buffer
		if err := b.writeSegment(&out); err != nil {
			rt.Fatal(err)
		}
		r, _, err := segment.Open(bytes.NewReader(out.Bytes()), segment.Options{})
		if err != nil {
			rt.Fatal(err)
		}
		defer r.Close()
		for _, tx := range want {
			got, err := r.Next()
			if err != nil {
				rt.Fatal(err)
			}
			if got.TXID != tx.txid || !got.Time.Equal(tx.at) || got.DBSize != tx.dbSize {
				rt.Fatalf("txn %+v, want %+v", got, tx)
			}
			for _, p := range tx.pages {
				gp, err := r.NextPage()
				if err != nil {
					rt.Fatal(err)
				}
				if gp.Pgno != p.pgno || !bytes.Equal(gp.Data, p.data) {
					rt.Fatalf("txid %d: page %d, want page %d", tx.txid, gp.Pgno, p.pgno)
				}
			}
			if _, err := r.NextPage(); err != io.EOF {
				rt.Fatalf("txid %d: more pages than written: %v", tx.txid, err)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			rt.Fatalf("more transactions than written: %v", err)
		}
	})
}

// TestImage checks that the image reads, from the database file and
// through SQLite's sqlite_dbpage, the pages of the database the read
// transaction shows, reads pages past its end as zeros, and reads the lock
// page at 1 GiB, which SQLite never writes, as zeros; and that reads at
// any offset and length agree with the file.
func TestImage(t *testing.T) {
	for _, viaFile := range []bool{true, false} {
		t.Run(fmt.Sprintf("file=%v", viaFile), func(t *testing.T) { testImage(t, viaFile) })
	}
}

func testImage(t *testing.T, viaFile bool) {
	dir := t.TempDir()
	const ps = 512
	path := newDB(t, dir, ps, "CREATE TABLE t(v BLOB)", "INSERT INTO t VALUES(randomblob(3000))")
	// Read before any connection is open: see statDB.
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db := openApp(t, path, "PRAGMA query_only=1")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	pages := uint32(len(file)/ps) + 2
	// The identity of another file makes the image read through SQLite.
	ident := path
	if !viaFile {
		ident = dir
	}
	info, err := os.Stat(ident)
	if err != nil {
		t.Fatal(err)
	}
	im, err := newImage(context.Background(), path, info, tx, nil, map[uint32]wal.PageRef{}, ps, pages)
	if err != nil {
		t.Fatal(err)
	}
	defer im.close()
	if (im.file != nil) != viaFile {
		t.Fatalf("the image reads the file: %v, want %v", im.file != nil, viaFile)
	}
	want := append(bytes.Clone(file), make([]byte, 2*ps)...)
	got := make([]byte, len(want))
	if n, err := im.ReadAt(got, 0); n != len(want) || (err != nil && err != io.EOF) || !bytes.Equal(got, want) {
		t.Fatalf("whole image: %d bytes, %v", n, err)
	}
	for _, c := range []struct{ off, n int }{{100, 1000}, {ps - 10, 20}, {len(file), ps}, {len(want) - 1, 1}} {
		p := make([]byte, c.n)
		n, err := im.ReadAt(p, int64(c.off))
		if n != c.n || (err != nil && err != io.EOF) || !bytes.Equal(p, want[c.off:c.off+c.n]) {
			t.Fatalf("read %d at %d: %d bytes, %v", c.n, c.off, n, err)
		}
	}
	if n, err := im.ReadAt(make([]byte, 10), int64(len(want)-5)); n != 5 || err != io.EOF {
		t.Fatalf("read across the end: %d bytes, %v", n, err)
	}
	if _, err := im.ReadAt(make([]byte, 1), int64(len(want))); err != io.EOF {
		t.Fatalf("read at the end: %v", err)
	}
	lock := wal.LockPage(ps)
	im.pages = lock + 1
	p := bytes.Repeat([]byte{1}, ps)
	if _, err := im.ReadAt(p, int64(lock-1)*ps); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(p, make([]byte, ps)) {
		t.Fatal("the lock page did not read as zeros")
	}
}

// TestStateRoundTrip checks that the state file comes back as saved, and
// that a spool holding another database's state is refused.
func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if st, err := loadState(dir, "/db"); st != nil || err != nil {
		t.Fatalf("no state: %v %v", st, err)
	}
	pos := wal.Position{Offset: wal.HeaderSize + 3*(wal.FrameHeaderSize+4096), PageSize: 4096, Seq: 2, Salt1: 3, Salt2: 4, Sum1: 5, Sum2: 6}
	in := &savedState{DB: "/db", TXID: 42, Time: time.Unix(100, 5).UTC(), Pos: &pos, PageSize: 4096, DBSize: 9, Reserved: 50,
		Targets: map[string]*savedTarget{"s3://b/p": {Snapshot: 40, Synced: true, Replicated: 41, Dirty: []int{1, 7}}},
		Gaps:    []Gap{{Target: "s3://b/p", First: 3, Last: 9, Reason: "test"}}}
	if err := saveState(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := loadState(dir, "/db")
	if err != nil {
		t.Fatal(err)
	}
	if out.TXID != 42 || *out.Pos != pos || out.Reserved != 50 || !out.Time.Equal(in.Time) ||
		out.Targets["s3://b/p"].Replicated != 41 || len(out.Targets["s3://b/p"].Dirty) != 2 || len(out.Gaps) != 1 {
		t.Fatalf("state came back as %+v", out)
	}
	if _, err := loadState(dir, "/other"); err == nil {
		t.Fatal("a spool holding another database's state was accepted")
	}
	os.WriteFile(statePath(dir), []byte("{not json"), 0o600)
	if _, err := loadState(dir, "/db"); err == nil {
		t.Fatal("a damaged state was accepted")
	}
}

// TestCheckMode checks how Open names what it refuses.
func TestCheckMode(t *testing.T) {
	for _, c := range []struct {
		mode  string
		pages int64
		err   error
		want  error
	}{
		{"wal", 3, nil, nil},
		{"WAL", 3, nil, nil},
		{"delete", 3, nil, ErrNotWAL},
		{"delete", 0, nil, ErrNotWAL},
		{"", 0, errors.New("file is not a database (26)"), ErrNotSQLite},
	} {
		if err := checkMode(c.mode, c.pages, c.err); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%q %d %v: %v, want %v", c.mode, c.pages, c.err, err, c.want)
		}
	}
}
