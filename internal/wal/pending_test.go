package wal

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// validFramesAfter counts the frames after pos that pass SQLite's checks:
// frames of a transaction not committed yet, or rolled back.
func validFramesAfter(t *testing.T, path string, hdr Header, pos Position) int {
	t.Helper()
	log, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sum := [2]uint32{pos.Sum1, pos.Sum2}
	for off := pos.Offset; off+pos.FrameSize() <= int64(len(log)); off += pos.FrameSize() {
		f := log[off : off+pos.FrameSize()]
		var fh frameFields
		fh.decode(f)
		if fh.pgno == 0 || fh.salt1 != hdr.Salt1 || fh.salt2 != hdr.Salt2 {
			break
		}
		sum = naiveSum(hdr.BigEndian, sum, f[:8])
		sum = naiveSum(hdr.BigEndian, sum, f[FrameHeaderSize:])
		if sum != [2]uint32{fh.sum1, fh.sum2} {
			break
		}
		n++
	}
	return n
}

type frameFields struct{ pgno, commit, salt1, salt2, sum1, sum2 uint32 }

func (ff *frameFields) decode(f []byte) {
	u := func(i int) uint32 { return uint32(f[i])<<24 | uint32(f[i+1])<<16 | uint32(f[i+2])<<8 | uint32(f[i+3]) }
	*ff = frameFields{u(0), u(4), u(8), u(12), u(16), u(20)}
}

// A transaction SQLite has spilled into the log but not committed is not
// yielded; once it commits it is, whole. One rolled back after spilling
// leaves valid frames behind that the next commit overwrites.
func TestPendingSQLite(t *testing.T) {
	l := openLive(t, 1024)
	w := newWorkload(t, l, 2)
	w.insert(t, 5)
	f, r := l.openWAL(t)
	hdr, _ := ReadHeader(f)
	txns := readAll(t, r)
	pos := r.Position()

	l.exec(t, "BEGIN")
	w.insert(t, 40)
	if n := validFramesAfter(t, l.walPath(), hdr, pos); n == 0 {
		t.Fatal("the open transaction did not spill into the log; the test proves nothing")
	} else {
		t.Logf("%d valid frames of an open transaction", n)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("open transaction: %v, want io.EOF", err)
	}
	if r.Position() != pos {
		t.Fatal("position moved over an open transaction")
	}
	l.exec(t, "COMMIT")
	txn, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if txn.Start != pos {
		t.Fatalf("committed transaction starts at %v, want %v", txn.Start, pos)
	}
	txns = append(txns, txn)
	pos = r.Position()

	l.exec(t, "BEGIN")
	w.insert(t, 40)
	l.exec(t, "ROLLBACK")
	if n := validFramesAfter(t, l.walPath(), hdr, pos); n == 0 {
		t.Fatal("the rolled-back transaction did not spill into the log")
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("rolled back transaction: %v, want io.EOF", err)
	}
	l.exec(t, "INSERT INTO t(k) VALUES ('after rollback')")
	got := readAll(t, r)
	if len(got) != 1 || got[0].Start != pos || got[0].Frames > 3 {
		t.Fatalf("after the rollback: %d transactions, want 1 small one at %v", len(got), pos)
	}
	txns = append(txns, got...)
	path := rebuild(t, t.TempDir(), l.base, r, 1024, txns)
	if got, want := contentHash(t, path), contentHash(t, l.path); got != want {
		t.Fatalf("rebuilt %s, live %s", got, want)
	}
}

// A capture reads the log while the application writes it: frames appear
// half written, transactions spill before they commit. Reading, applying
// and polling concurrently with a writer must end in the live database,
// one transaction per commit.
func TestReadWhileWriting(t *testing.T) {
	l := openLive(t, 4096)
	newWorkload(t, l, 4)
	f, r := l.openWAL(t)
	rebuilt, err := os.CreateTemp(l.dir, "rebuilt-*.db")
	if err != nil {
		t.Fatal(err)
	}
	defer rebuilt.Close()
	if _, err := rebuilt.Write(l.base); err != nil {
		t.Fatal(err)
	}

	const commits = 150
	done := make(chan error, 1)
	go func() { done <- writeConcurrently(l, commits) }()

	n := 0
	applyNext := func() bool {
		txn, err := r.Next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		pages := make([][]byte, len(txn.Pages))
		for i, ref := range txn.Pages {
			pages[i] = make([]byte, 4096)
			if err := r.ReadPage(ref, pages[i]); errors.Is(err, ErrChanged) {
				// Read the transaction again, as a capture would.
				t.Logf("frame changed under the scan: %v", err)
				if r, err = Resume(f, txn.Start); err != nil {
					t.Fatal(err)
				}
				return true
			} else if err != nil {
				t.Fatal(err)
			}
		}
		for i, ref := range txn.Pages {
			if _, err := rebuilt.WriteAt(pages[i], int64(ref.Pgno-1)*4096); err != nil {
				t.Fatal(err)
			}
		}
		if err := rebuilt.Truncate(int64(txn.Commit) * 4096); err != nil {
			t.Fatal(err)
		}
		n++
		return true
	}
	for writing := true; writing; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		default:
		}
		for applyNext() {
		}
	}
	for applyNext() {
	}
	// One for the CREATE TABLE, one per commit.
	if n != commits+1 {
		t.Fatalf("%d transactions read, want %d", n, commits+1)
	}
	if got, want := contentHash(t, rebuilt.Name()), contentHash(t, l.path); got != want {
		t.Fatalf("rebuilt while writing: %s, live %s", got, want)
	}
}

// writeConcurrently commits n transactions of random rows through l's
// connection, some large enough to spill before they commit.
func writeConcurrently(l *liveDB, n int) error {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range n {
		if _, err := l.conn.ExecContext(ctx, "BEGIN"); err != nil {
			return err
		}
		rows := 1 + rng.IntN(3)
		if i%10 == 9 {
			rows = 40
		}
		for range rows {
			blob := make([]byte, rng.IntN(3*4096))
			for j := range blob {
				blob[j] = byte(rng.Uint32())
			}
			if _, err := l.conn.ExecContext(ctx, "INSERT INTO t(k, v) VALUES (?, ?)", i, blob); err != nil {
				return err
			}
		}
		if _, err := l.conn.ExecContext(ctx, "UPDATE t SET k = k || 'x' WHERE id % 7 = ?", i%7); err != nil {
			return err
		}
		if _, err := l.conn.ExecContext(ctx, "COMMIT"); err != nil {
			return err
		}
	}
	return nil
}
