package follow

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// source is a real SQLite database in WAL mode whose committed states are
// published into a store as a replicator would: a snapshot, then change
// sets of page images, one transaction per statement.
type source struct {
	t        *testing.T
	path     string
	db       *sql.DB
	pageSize int
	store    *memstore.Store
	txid     uint64
	states   [][]byte // states[i] is the file at txid i+1
	pending  []txnRec // transactions not yet in a change set
	t0       time.Time
	// damage, when set, changes the bytes of the next change set
	// published before any follower can see them.
	damage func([]byte)
}

type txnRec struct {
	txid  uint64
	time  time.Time
	size  uint32
	pages map[uint32][]byte
}

// newSource creates the source database with the given page size; the
// pragmas run before its first table exists, where settings such as
// auto_vacuum take effect.
func newSource(t *testing.T, pageSize int, pragmas ...string) *source {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	s := &source{t: t, path: path, db: db, pageSize: pageSize, store: memstore.New(), t0: time.Now()}
	// The page size is set before the first write, and WAL mode after
	// it: a database created by switching to WAL takes the default size.
	for _, q := range append(append([]string{fmt.Sprintf("PRAGMA page_size = %d", pageSize)}, pragmas...),
		"CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER, note BLOB)",
		"PRAGMA journal_mode = WAL",
	) {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var got int
	if err := db.QueryRow("PRAGMA page_size").Scan(&got); err != nil || got != pageSize {
		t.Fatalf("page size %d, %v; want %d", got, err, pageSize)
	}
	s.txid = 1
	s.states = append(s.states, s.read())
	s.snapshot()
	return s
}

// read checkpoints the WAL into the file and returns the file: the
// committed state, with the WAL-mode header a follower expects.
func (s *source) read() []byte {
	s.t.Helper()
	if _, err := s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		s.t.Fatal(err)
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// series stands in for generate_series, which this SQLite lacks.
var series = regexp.MustCompile(`generate_series\(1, (\d+)\)`)

// exec commits each statement as one transaction.
func (s *source) exec(stmts ...string) {
	s.t.Helper()
	for _, q := range stmts {
		q = series.ReplaceAllString(q, "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < $1) SELECT i FROM n)")
		if _, err := s.db.Exec(q); err != nil {
			s.t.Fatalf("%s: %v", q, err)
		}
		prev := s.states[len(s.states)-1]
		cur := s.read()
		s.txid++
		s.states = append(s.states, cur)
		rec := txnRec{txid: s.txid, time: time.Now(), size: uint32(len(cur) / s.pageSize), pages: map[uint32][]byte{}}
		for p := 0; p*s.pageSize < len(cur); p++ {
			page := cur[p*s.pageSize : (p+1)*s.pageSize]
			if (p+1)*s.pageSize > len(prev) || !bytes.Equal(page, prev[p*s.pageSize:(p+1)*s.pageSize]) {
				rec.pages[uint32(p+1)] = page
			}
		}
		s.pending = append(s.pending, rec)
	}
}

// publish stores the pending transactions as one change set.
func (s *source) publish() {
	s.t.Helper()
	if len(s.pending) == 0 {
		return
	}
	first, last := s.pending[0].txid, s.pending[len(s.pending)-1].txid
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{PageSize: s.pageSize, First: first, Last: last})
	if err != nil {
		s.t.Fatal(err)
	}
	for _, rec := range s.pending {
		if err := w.Begin(rec.txid, rec.time, rec.size); err != nil {
			s.t.Fatal(err)
		}
		for p := uint32(1); p <= rec.size; p++ {
			if page, ok := rec.pages[p]; ok {
				if err := w.Page(p, page); err != nil {
					s.t.Fatal(err)
				}
			}
		}
		if err := w.Commit(); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		s.t.Fatal(err)
	}
	if s.damage != nil {
		s.damage(buf.Bytes())
		s.damage = nil
	}
	if _, err := s.store.Put(context.Background(), layout.ChangeSetKey(first), bytes.NewReader(buf.Bytes()), objstore.PutOptions{}); err != nil {
		s.t.Fatal(err)
	}
	s.pending = nil
}

// snapshot stores the current state as a snapshot at the current txid.
func (s *source) snapshot() {
	s.t.Helper()
	cur := s.states[len(s.states)-1]
	if _, _, err := snapshot.Write(context.Background(), s.store, bytes.NewReader(cur), s.pageSize, uint32(len(cur)/s.pageSize), s.txid, time.Now(), snapshot.Options{}); err != nil {
		s.t.Fatal(err)
	}
}

// sameContent checks that the follower's database at path holds the
// state of txid: the same pages, byte for byte, but for the header fields
// the pager rewrites at each commit (change counter, version-valid-for,
// SQLite version).
func sameContent(t *testing.T, s *source, path string, txid uint64) {
	t.Helper()
	got := checkpointed(t, path)
	want := s.states[txid-1]
	if len(got) != len(want) {
		t.Fatalf("follower has %d pages, txid %d has %d", len(got)/s.pageSize, txid, len(want)/s.pageSize)
	}
	for _, off := range []int{24, 92, 96} {
		copy(got[off:off+4], want[off:off+4])
	}
	if !bytes.Equal(got, want) {
		for p := 0; p*s.pageSize < len(got); p++ {
			if !bytes.Equal(got[p*s.pageSize:(p+1)*s.pageSize], want[p*s.pageSize:(p+1)*s.pageSize]) {
				t.Fatalf("page %d differs from txid %d's", p+1, txid)
			}
		}
	}
}

// checkpointed returns the content of the database at path with its WAL
// folded in, read through a connection of its own.
func checkpointed(t *testing.T, path string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, log, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done); err != nil || busy != 0 {
		t.Fatalf("checkpoint %s: busy %d, %v", path, busy, err)
	}
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check %s: %q %v", path, ok, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pagesOf returns an iterator over one recorded transaction's pages.
func pagesOf(rec txnRec, size uint32) pageIter {
	p := uint32(0)
	return func() (uint32, []byte, error) {
		for p < size {
			p++
			if page, ok := rec.pages[p]; ok {
				return p, page, nil
			}
		}
		return 0, nil, io.EOF
	}
}
