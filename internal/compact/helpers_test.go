package compact_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the S3 client.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

const pageSize = 4096

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// history is a replica built from a real SQLite database: a snapshot at
// txid base, then one transaction per txid after it.
type history struct {
	base uint64
	// sums[i] is the SHA-256 of the database file at txid base+i.
	sums [][32]byte
}

// fileStore is a file store in a new temporary directory, and its root.
func fileStore(t testing.TB) (*filestore.Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := filestore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// s3Store is a bucket of its own on the real S3 server, when there is one.
func s3Store(t testing.TB) objstore.Store {
	t.Helper()
	srv := testenv.S3(t)
	s, err := s3store.New(context.Background(), s3store.Config{
		Bucket: testenv.Bucket(t, srv), Prefix: "db", Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// build runs n small transactions on a real SQLite database (rollback
// journal, so that the file is the committed state after each) and stores
// a snapshot of its starting state at txid base and one change set per
// transaction after it, each holding the pages the transaction changed.
// Commit times are a second apart from t0.
func build(t testing.TB, store objstore.Store, base uint64, n int) *history {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "src.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(DELETE)&_pragma=page_size(4096)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)",
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200) INSERT INTO t (v) SELECT randomblob(1000) FROM n",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	read := func() []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	prev := read()
	h := &history{base: base, sums: [][32]byte{sha256.Sum256(prev)}}
	if _, _, err := snapshot.Write(ctx, store, bytes.NewReader(prev), pageSize, uint32(len(prev)/pageSize), base, t0, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		var q string
		switch i % 5 {
		case 0, 1, 2:
			q = fmt.Sprintf("INSERT INTO t (v) VALUES (randomblob(%d))", 50+i%300)
		case 3:
			q = fmt.Sprintf("UPDATE t SET v = randomblob(200) WHERE id = %d", 1+i%150)
		case 4:
			q = "DELETE FROM t WHERE id = (SELECT min(id) FROM t)"
		}
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
		cur := read()
		txid := base + uint64(i)
		putSegment(t, store, txid, txid, []txn{diff(prev, cur, t0.Add(time.Duration(i)*time.Second))})
		h.sums = append(h.sums, sha256.Sum256(cur))
		prev = cur
	}
	return h
}

// txn is a transaction as a test states it.
type txn struct {
	time   time.Time
	dbSize uint32
	pages  []segment.Page
}

// diff is the transaction that turns the database prev into cur.
func diff(prev, cur []byte, at time.Time) txn {
	x := txn{time: at, dbSize: uint32(len(cur) / pageSize)}
	for p := 0; p*pageSize < len(cur); p++ {
		page := cur[p*pageSize : (p+1)*pageSize]
		if (p+1)*pageSize > len(prev) || !bytes.Equal(page, prev[p*pageSize:(p+1)*pageSize]) {
			x.pages = append(x.pages, segment.Page{Pgno: uint32(p + 1), Data: page})
		}
	}
	return x
}

func putSegment(t testing.TB, store objstore.Store, first, last uint64, txns []txn) {
	t.Helper()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{PageSize: pageSize, First: first, Last: last})
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range txns {
		if err := w.Begin(first+uint64(i), x.time, x.dbSize); err != nil {
			t.Fatal(err)
		}
		for _, p := range x.pages {
			if err := w.Page(p.Pgno, p.Data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(context.Background(), layout.SegmentKey(first, last), bytes.NewReader(buf.Bytes()), objstore.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}
}

// restoreSum restores txid (0: the latest) and returns the SHA-256 of the
// restored file and the number of change sets the plan named.
func restoreSum(t testing.TB, store objstore.Store, txid uint64) ([32]byte, int) {
	t.Helper()
	ctx := context.Background()
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(txid)
	if err != nil {
		t.Fatalf("plan txid %d: %v", txid, err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	res, err := restore.ToFile(ctx, store, plan, out, restore.Options{})
	if err != nil {
		t.Fatalf("restore txid %d: %v", txid, err)
	}
	if txid != 0 && res.TXID != txid {
		t.Fatalf("restore txid %d ended at txid %d", txid, res.TXID)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(out)
	return sha256.Sum256(b), len(plan.Segments)
}

// checkEveryTXID restores every txid of h and compares each with the
// database as it was.
func checkEveryTXID(t *testing.T, store objstore.Store, h *history) {
	t.Helper()
	for i, want := range h.sums {
		if got, _ := restoreSum(t, store, h.base+uint64(i)); got != want {
			t.Fatalf("txid %d restores to another database than the one committed", h.base+uint64(i))
		}
	}
}

// segments lists the replica's change sets.
func segments(t testing.TB, store objstore.Store) []layout.Segment {
	t.Helper()
	l, err := layout.Read(context.Background(), store, layout.Segments, segment.Heads(store))
	if err != nil {
		t.Fatal(err)
	}
	return l.Segments
}

// record is a transaction as a change set holds it, its pages hashed.
type record struct {
	txid   uint64
	time   time.Time
	dbSize uint32
	pages  [][32]byte
	pgnos  []uint32
}

// records decodes the change sets in segs, in order.
func records(t testing.TB, store objstore.Store, segs []layout.Segment) []record {
	t.Helper()
	var out []record
	for _, s := range segs {
		rc, _, err := store.Get(context.Background(), s.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		r, err := segment.NewReader(bytes.NewReader(data), segment.Options{Key: s.Key})
		if err != nil {
			t.Fatal(err)
		}
		for {
			x, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			rec := record{txid: x.TXID, time: x.Time, dbSize: x.DBSize}
			for {
				p, err := r.NextPage()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				rec.pgnos = append(rec.pgnos, p.Pgno)
				rec.pages = append(rec.pages, sha256.Sum256(p.Data))
			}
			out = append(out, rec)
		}
		r.Close()
	}
	return out
}

// failDeletes is a store whose deletes fail, as if compaction were killed
// right after storing a merged change set.
type failDeletes struct{ objstore.Store }

func (failDeletes) Delete(context.Context, ...string) error {
	return fmt.Errorf("killed before deleting")
}

// corrupt flips a byte in the middle of the object at key in a file store
// rooted at root, behind the store's back.
func corrupt(t testing.TB, root, key string) {
	t.Helper()
	path := filepath.Join(root, filepath.FromSlash(key))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	// WriteFile keeps the file and so its extended attribute, with the
	// checksum the store recorded.
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// txnsOf decodes the change set at key into its transactions.
func txnsOf(t testing.TB, store objstore.Store, key string) []txn {
	t.Helper()
	rc, _, err := store.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := segment.NewReader(bytes.NewReader(data), segment.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []txn
	for {
		x, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		tx := txn{time: x.Time, dbSize: x.DBSize}
		for {
			p, err := r.NextPage()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			tx.pages = append(tx.pages, segment.Page{Pgno: p.Pgno, Data: bytes.Clone(p.Data)})
		}
		out = append(out, tx)
	}
}
