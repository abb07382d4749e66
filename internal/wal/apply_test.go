package wal

import (
	"fmt"
	"io"
)

// database is what apply writes to; an *os.File is one.
type database interface {
	io.WriterAt
	Truncate(size int64) error
}

// apply writes the pages of txn into db and sets db's size to the commit's,
// the way a checkpoint moves a transaction from the log into the database.
// Applying every committed transaction in order to the database file as it
// was when the log generation began gives the database as of the last one.
func apply(db database, r *Reader, pageSize int, txn Txn) error {
	page := make([]byte, pageSize)
	for _, ref := range txn.Pages {
		if err := r.ReadPage(ref, page); err != nil {
			return err
		}
		if _, err := db.WriteAt(page, int64(ref.Pgno-1)*int64(pageSize)); err != nil {
			return fmt.Errorf("write page %d: %w", ref.Pgno, err)
		}
	}
	// Truncate also extends: a database can grow past pages the log never
	// holds, such as the lock page, which stays zero.
	return db.Truncate(int64(txn.Commit) * int64(pageSize))
}
