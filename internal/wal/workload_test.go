package wal

import (
	"context"
	"math/rand/v2"
	"testing"
)

// workload drives random transactions against a liveDB: inserts, updates
// and deletes of rows whose blobs span several pages, schema changes, large
// transactions that spill to the log before they commit, rollbacks, and a
// VACUUM that shrinks the database.
type workload struct {
	l       *liveDB
	rng     *rand.Rand
	ids     []int64
	schemas int
}

// schemaChanges are applied in order, one per schema step.
var schemaChanges = [][]string{
	{"CREATE INDEX t_k ON t(k)"},
	{"ALTER TABLE t ADD COLUMN extra TEXT DEFAULT 'x'"},
	{"CREATE TABLE u(a INTEGER PRIMARY KEY, b BLOB)", "INSERT INTO u(b) VALUES (zeroblob(5000)), (zeroblob(70000))"},
	{"DROP INDEX t_k"},
	{"DROP TABLE u"},
}

func newWorkload(t testing.TB, l *liveDB, seed uint64) *workload {
	t.Helper()
	// A small page cache makes large transactions spill pages into the log
	// before they commit, and rewrite frames they already spilled.
	l.exec(t, "PRAGMA cache_size=16")
	l.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
	return &workload{l: l, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// blob returns random bytes, up to three pages long.
func (w *workload) blob() []byte {
	b := make([]byte, w.rng.IntN(3*w.l.pageSize+1))
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	return b
}

func (w *workload) insert(t testing.TB, n int) {
	t.Helper()
	for range n {
		res, err := w.l.conn.ExecContext(context.Background(), "INSERT INTO t(k, v) VALUES (?, ?)", w.rng.Int64(), w.blob())
		if err != nil {
			t.Fatal(err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			t.Fatal(err)
		}
		w.ids = append(w.ids, id)
	}
}

func (w *workload) update(t testing.TB, n int) {
	t.Helper()
	for range n {
		id := w.ids[w.rng.IntN(len(w.ids))]
		w.l.execArgs(t, "UPDATE t SET k = ?, v = ? WHERE id = ?", w.rng.Int64(), w.blob(), id)
	}
}

func (w *workload) delete(t testing.TB, n int) {
	t.Helper()
	for range min(n, len(w.ids)) {
		i := w.rng.IntN(len(w.ids))
		w.l.execArgs(t, "DELETE FROM t WHERE id = ?", w.ids[i])
		w.ids[i] = w.ids[len(w.ids)-1]
		w.ids = w.ids[:len(w.ids)-1]
	}
}

// step runs one random transaction, or two, and returns how many commits
// it made that changed the database.
func (w *workload) step(t testing.TB) (commits int) {
	t.Helper()
	kind := w.rng.IntN(10)
	if len(w.ids) < 3 {
		kind = 0
	}
	switch kind {
	case 0, 1, 2:
		w.l.exec(t, "BEGIN")
		w.insert(t, 1+w.rng.IntN(10))
	case 3, 4:
		w.l.exec(t, "BEGIN")
		w.update(t, 1+w.rng.IntN(5))
	case 5:
		w.l.exec(t, "BEGIN")
		w.delete(t, 1+w.rng.IntN(4))
	case 6:
		if w.schemas == len(schemaChanges) {
			w.l.exec(t, "BEGIN")
			w.insert(t, 1)
			break
		}
		w.l.exec(t, "BEGIN")
		w.l.exec(t, schemaChanges[w.schemas]...)
		w.schemas++
	case 7:
		// Larger than the page cache, touching rows repeatedly: pages spill
		// to the log, and are rewritten in place there before the commit.
		w.l.exec(t, "BEGIN")
		w.insert(t, 20)
		for range 3 {
			w.update(t, 10)
		}
	case 8:
		// Spilled and then rolled back: frames reach the log but no commit
		// frame does; the next transaction overwrites them.
		ids := w.ids
		w.l.exec(t, "BEGIN")
		w.insert(t, 25)
		w.update(t, 5)
		w.l.exec(t, "ROLLBACK")
		w.ids = ids[:len(ids):len(ids)]
		return 0
	case 9:
		// VACUUM rewrites the database through the log and shrinks it.
		w.l.exec(t, "BEGIN")
		w.delete(t, len(w.ids)/2)
		w.l.exec(t, "COMMIT", "VACUUM")
		return 2
	}
	w.l.exec(t, "COMMIT")
	return 1
}
