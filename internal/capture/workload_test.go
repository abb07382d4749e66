package capture

import (
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
)

// appSchema is the schema the test applications start from. app_meta
// holds the number of the last commit, so that a restored database says
// which commit it is.
var appSchema = []string{
	"CREATE TABLE app_meta(k INTEGER)",
	"INSERT INTO app_meta VALUES(0)",
	"CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL)",
	"CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB)",
}

// workload writes random transactions, one SQLite commit per step, the
// same ones for the same seed. Over n steps it also changes the schema,
// vacuums, and drops and recreates a table, at fixed points.
type workload struct {
	db     *sql.DB
	rng    *rand.Rand
	n      int
	k      int // commits so far
	nextID int
	blobs  []int
	note   bool // items has the column added by the schema change
}

func newWorkload(db *sql.DB, seed uint64, n int) *workload {
	return &workload{db: db, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), n: n, nextID: 1}
}

// resume picks the workload up from the state of the database, for a
// writer that continues where another one stopped.
func (w *workload) resume() error {
	if err := w.db.QueryRow("SELECT k FROM app_meta").Scan(&w.k); err != nil {
		return err
	}
	var top sql.NullInt64
	if err := w.db.QueryRow("SELECT max(id) FROM (SELECT id FROM items UNION ALL SELECT id FROM blobs)").Scan(&top); err != nil {
		return err
	}
	w.nextID = int(top.Int64) + 1
	rows, err := w.db.Query("SELECT id FROM blobs ORDER BY id")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return err
		}
		w.blobs = append(w.blobs, id)
	}
	var n int
	if err := w.db.QueryRow("SELECT count(*) FROM pragma_table_info('items') WHERE name='note'").Scan(&n); err != nil {
		return err
	}
	w.note = n > 0
	return rows.Err()
}

// vacuumAt is the commit that runs VACUUM; it cannot also move the marker,
// so no state carries its number (its content is the one before it).
func (w *workload) vacuumAt() int { return w.n / 2 }

// step makes commit w.k+1.
func (w *workload) step() error {
	w.k++
	if w.k == w.vacuumAt() {
		_, err := w.db.Exec("VACUUM")
		return err
	}
	tx, err := w.db.Begin()
	if err != nil {
		return err
	}
	if err := w.change(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("commit %d: %w", w.k, err)
	}
	if _, err := tx.Exec("UPDATE app_meta SET k=?", w.k); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (w *workload) change(tx *sql.Tx) error {
	r := w.rng
	switch {
	case w.k == w.n/3:
		w.note = true
		if _, err := tx.Exec("ALTER TABLE items ADD COLUMN note TEXT DEFAULT 'none'"); err != nil {
			return err
		}
		_, err := tx.Exec("CREATE INDEX items_qty ON items(qty)")
		return err
	case w.k == 2*w.n/3:
		if _, err := tx.Exec("DROP TABLE blobs"); err != nil {
			return err
		}
		w.blobs = nil
		_, err := tx.Exec("CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB, tag TEXT)")
		return err
	}
	switch p := r.IntN(100); {
	case p < 35:
		return w.insert(tx, 1+r.IntN(5))
	case p < 55:
		// Most transactions touch a few pages, as in most applications.
		from := r.IntN(w.nextID)
		_, err := tx.Exec("UPDATE items SET qty=qty+?, name=? WHERE id BETWEEN ? AND ?", r.IntN(9), fmt.Sprintf("name-%d", r.IntN(1e6)), from, from+r.IntN(40))
		return err
	case p < 65:
		from := r.IntN(w.nextID)
		_, err := tx.Exec("DELETE FROM items WHERE id BETWEEN ? AND ?", from, from+r.IntN(30))
		return err
	case p < 73:
		return w.blob(tx)
	case p < 76:
		return w.bulk(tx, 50+r.IntN(70))
	case p < 77:
		// Now and then one touches every page of a table.
		m := 5 + r.IntN(20)
		_, err := tx.Exec("UPDATE items SET qty=qty+1 WHERE id%?=?", m, r.IntN(m))
		return err
	}
	return nil
}

// insert adds n rows in one statement.
func (w *workload) insert(tx *sql.Tx, n int) error {
	r := w.rng
	cols, marks := "id,name,qty,price", "(?,?,?,?)"
	if w.note {
		cols, marks = "id,name,qty,price,note", "(?,?,?,?,?)"
	}
	q := "INSERT INTO items(" + cols + ") VALUES " + marks + strings.Repeat(","+marks, n-1)
	var args []any
	for range n {
		id := w.nextID
		w.nextID++
		args = append(args, id, fmt.Sprintf("item-%d-%x", id, r.Uint64()), r.IntN(1000), r.Float64()*100)
		if w.note {
			args = append(args, fmt.Sprintf("note %d", r.IntN(50)))
		}
	}
	_, err := tx.Exec(q, args...)
	return err
}

// bulk adds n rows computed by SQLite itself, as a batch job would.
func (w *workload) bulk(tx *sql.Tx, n int) error {
	first := w.nextID
	w.nextID += n
	_, err := tx.Exec(`WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM c WHERE x+1<?)
		INSERT INTO items(id,name,qty,price) SELECT ?+x, printf('bulk-%d-%d', ?+x, (x*?)%997), (x*7)%1000, x*0.25 FROM c`,
		n, first, first, w.rng.IntN(1000))
	return err
}

// blob inserts, rewrites or deletes a blob of up to 160 KB, so that one
// transaction spans several 64 KiB chunks.
func (w *workload) blob(tx *sql.Tx) error {
	r := w.rng
	data := make([]byte, 1000+r.IntN(160_000))
	for i := 0; i+8 <= len(data); i += 8 {
		// Compressible, but not trivially.
		binary.LittleEndian.PutUint64(data[i:], r.Uint64()&0x0707070707070707)
	}
	switch {
	case len(w.blobs) > 0 && r.IntN(3) == 0:
		i := r.IntN(len(w.blobs))
		id := w.blobs[i]
		w.blobs = append(w.blobs[:i], w.blobs[i+1:]...)
		_, err := tx.Exec("DELETE FROM blobs WHERE id=?", id)
		return err
	case len(w.blobs) > 0 && r.IntN(2) == 0:
		_, err := tx.Exec("UPDATE blobs SET data=? WHERE id=?", data, w.blobs[r.IntN(len(w.blobs))])
		return err
	case len(w.blobs) >= 4:
		return nil
	}
	id := w.nextID
	w.nextID++
	w.blobs = append(w.blobs, id)
	_, err := tx.Exec("INSERT INTO blobs(id,data) VALUES(?,?)", id, data)
	return err
}
