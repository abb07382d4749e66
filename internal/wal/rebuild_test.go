package wal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// run is a live database after a random workload, with every transaction
// its log yielded while the workload ran, and sqlite3's content hash of the
// database after each step, keyed by the number of transactions committed.
type run struct {
	l      *liveDB
	f      *os.File
	r      *Reader
	txns   []Txn
	hashes map[int]string
}

// runWorkload runs steps random steps against a new database, reading the
// live log after each step as a capture would.
func runWorkload(t *testing.T, pageSize, steps int) *run {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("page size %d, seed %d", pageSize, seed)
	l := openLive(t, pageSize)
	w := newWorkload(t, l, seed)
	f, r := l.openWAL(t)
	ru := &run{l: l, f: f, r: r, hashes: map[int]string{}}
	ru.txns = readAll(t, r)
	if len(ru.txns) != 1 {
		t.Fatalf("CREATE TABLE gave %d transactions, want 1", len(ru.txns))
	}
	ru.hashes[1] = contentHash(t, l.path)
	for range steps {
		want := w.step(t)
		got := readAll(t, r)
		if len(got) != want {
			t.Fatalf("step committed %d transactions, reader yielded %d", want, len(got))
		}
		ru.txns = append(ru.txns, got...)
		ru.hashes[len(ru.txns)] = contentHash(t, l.path)
	}
	return ru
}

func TestRebuildMatchesSQLite(t *testing.T) {
	for _, pageSize := range []int{1024, 4096, 65536} {
		t.Run(fmt.Sprint(pageSize), func(t *testing.T) {
			ru := runWorkload(t, pageSize, 30)
			l := ru.l

			base, err := os.ReadFile(l.path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(base, l.base) {
				t.Fatal("database file changed during the run: something checkpointed")
			}

			full := rebuild(t, l.dir, l.base, ru.r, pageSize, ru.txns)
			if got, want := contentHash(t, full), ru.hashes[len(ru.txns)]; got != want {
				t.Fatalf("rebuilt database hash %s, live %s", got, want)
			}

			// The rebuilt file must be byte for byte what SQLite's own
			// checkpoint of the same log makes of the same database file.
			ckpt := filepath.Join(t.TempDir(), "db")
			copyFile(t, l.path, ckpt)
			copyFile(t, l.walPath(), ckpt+"-wal")
			sqlite3(t, ckpt, "PRAGMA wal_checkpoint(TRUNCATE);")
			a, _ := os.ReadFile(full)
			b, _ := os.ReadFile(ckpt)
			if !bytes.Equal(a, b) {
				t.Fatalf("rebuilt database (%d bytes) differs from sqlite3's checkpoint (%d bytes)", len(a), len(b))
			}

			// Every recorded prefix, up to a handful picked at random.
			var prefixes []int
			for n := range ru.hashes {
				prefixes = append(prefixes, n)
			}
			slices.Sort(prefixes)
			rand.Shuffle(len(prefixes), func(i, j int) { prefixes[i], prefixes[j] = prefixes[j], prefixes[i] })
			for _, n := range prefixes[:min(6, len(prefixes))] {
				path := rebuild(t, l.dir, l.base, ru.r, pageSize, ru.txns[:n])
				if got, want := contentHash(t, path), ru.hashes[n]; got != want {
					t.Fatalf("after %d transactions: rebuilt hash %s, live %s", n, got, want)
				}
			}

			// Reading the finished log in one pass yields what reading it
			// while it grew did.
			hdr, err := ReadHeader(ru.f)
			if err != nil {
				t.Fatal(err)
			}
			r2 := NewReader(ru.f, hdr)
			sameTxns(t, ru.r, ru.txns, r2, readAll(t, r2))
			logShape(t, ru.txns)
		})
	}
}

// logShape logs what the workload made SQLite write, to show the paths the
// test covered.
func logShape(t *testing.T, txns []Txn) {
	var frames, rewritten, shrinks int
	var prev uint32
	for _, txn := range txns {
		frames += txn.Frames
		if txn.Frames > len(txn.Pages) {
			rewritten++
		}
		if txn.Commit < prev {
			shrinks++
		}
		prev = txn.Commit
	}
	t.Logf("%d transactions, %d frames, %d with a page written twice, %d shrinking the database, final size %d pages",
		len(txns), frames, rewritten, shrinks, prev)
}

func TestResume(t *testing.T) {
	ru := runWorkload(t, 4096, 20)
	hdr, err := ReadHeader(ru.f)
	if err != nil {
		t.Fatal(err)
	}
	half := len(ru.txns) / 2
	r1 := NewReader(ru.f, hdr)
	first := make([]Txn, half)
	for i := range first {
		if first[i], err = r1.Next(); err != nil {
			t.Fatal(err)
		}
	}
	pos := r1.Position()
	if pos != first[half-1].End {
		t.Fatalf("position %v, want the end of the last transaction read, %v", pos, first[half-1].End)
	}

	// A new file handle, as after a restart of the process.
	f2, err := os.Open(ru.l.walPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	r2, err := Resume(f2, pos)
	if err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, r2)
	sameTxns(t, ru.r, ru.txns[:half], r1, first)
	sameTxns(t, ru.r, ru.txns[half:], r2, rest)
	if rest[0].Start != pos {
		t.Fatalf("resumed transaction starts at %v, want %v", rest[0].Start, pos)
	}
	if r2.Position() != ru.r.Position() {
		t.Fatalf("resumed reader ends at %v, want %v", r2.Position(), ru.r.Position())
	}
	path := rebuild(t, ru.l.dir, ru.l.base, r1, 4096, first)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, txn := range rest {
		if err := apply(f, r2, 4096, txn); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if got, want := contentHash(t, path), ru.hashes[len(ru.txns)]; got != want {
		t.Fatalf("rebuilt across a resume: hash %s, live %s", got, want)
	}
}
