package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeSources writes n files holding distinct data and returns their
// paths and contents.
func writeSources(t *testing.T, n int) ([]string, []string) {
	t.Helper()
	dir := t.TempDir()
	var paths, datas []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("src%03d", i))
		d := strings.Repeat(fmt.Sprintf("<%d>", i), 1+i%50)
		if err := os.WriteFile(p, []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
		paths, datas = append(paths, p), append(datas, d)
	}
	return paths, datas
}

// TestBatch commits batches through both ways of making them durable
// and checks that their entries come out in order, whole, with their
// payloads, and that nothing showed before Commit.
func TestBatch(t *testing.T) {
	for _, wholeFS := range []bool{true, false} {
		t.Run(fmt.Sprintf("syncfs=%v", wholeFS), func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, Options{})
			synced := 0
			s.syncFS = func(f *os.File) (bool, error) {
				if !wholeFS {
					return false, nil
				}
				synced++
				return true, nil
			}
			srcs, datas := writeSources(t, 70)
			b, err := s.NewBatch("files")
			if err != nil {
				t.Fatal(err)
			}
			var ids []ID
			for i, src := range srcs {
				// Every third entry from bytes in memory, the rest
				// copied from files: the two kinds mix in a batch.
				add := func() error { return b.AddFile(i, src) }
				if i%3 == 2 {
					add = func() error { return b.AddBytes(i, []byte(datas[i])) }
				}
				if err := add(); err != nil {
					t.Fatal(err)
				}
				if s.Len("files") != len(ids) {
					t.Fatalf("Len = %d before Commit; want %d", s.Len("files"), len(ids))
				}
				if b.Len() == 32 || i == len(srcs)-1 {
					got, err := b.Commit()
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != 32 && len(got) != len(srcs)%32 || b.Len() != 0 {
						t.Fatalf("Commit returned %d IDs and left %d entries", len(got), b.Len())
					}
					ids = append(ids, got...)
				}
			}
			if !slices.IsSorted(ids) {
				t.Fatalf("IDs out of order: %v", ids)
			}
			if wholeFS && synced != 3 {
				t.Fatalf("%d syncfs calls for 3 commits", synced)
			}
			tmpEmpty(t, dir)
			var total int64
			for _, d := range datas {
				total += int64(len(d))
			}
			if s.Bytes() != total || s.reserved != 0 {
				t.Fatalf("Bytes = %d, reserved = %d; want %d, 0", s.Bytes(), s.reserved, total)
			}
			mustCheckOK(t, dir, time.Now())

			// Reopened, as after a restart: all there, in order.
			s.Close()
			s = openT(t, dir, Options{})
			for i := range srcs {
				e := claimT(t, s, "files")
				var n int
				if err := e.Payload(&n); err != nil {
					t.Fatal(err)
				}
				if e.ID() != ids[i] || n != i || readData(t, e) != datas[i] {
					t.Fatalf("entry %d: ID %s payload %d data %q; want %s %d %q", i, e.ID(), n, readData(t, e), ids[i], i, datas[i])
				}
				if err := e.Done(); err != nil {
					t.Fatal(err)
				}
			}
			wantEmpty(t, s, "files")
			if s.Bytes() != 0 {
				t.Fatalf("Bytes = %d after draining", s.Bytes())
			}
		})
	}
}

// TestBatchEntryIsAnEntry checks that a batch writes an entry exactly as
// EnqueueFile does: same names, same meta, same bytes. The golden spool
// pins EnqueueFile's; this pins the batch's to it.
func TestBatchEntryIsAnEntry(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := openT(t, dir, Options{Now: clk.Now})
	srcs, _ := writeSources(t, 1)
	single, err := s.EnqueueFile("files", map[string]string{"key": "a"}, srcs[0], false)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(srcs[0])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.NewBatch("files")
	if err := b.AddFile(map[string]string{"key": "a"}, srcs[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.AddBytes(map[string]string{"key": "a"}, data); err != nil {
		t.Fatal(err)
	}
	ids, err := b.Commit()
	if err != nil || len(ids) != 2 {
		t.Fatalf("Commit = %v, %v", ids, err)
	}
	for _, id := range ids {
		for _, name := range []string{dataName, metaName} {
			want, err := os.ReadFile(filepath.Join(readyPath(dir, "files", single), name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(readyPath(dir, "files", id), name))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s of a batch entry:\n%s\nof EnqueueFile's:\n%s", name, got, want)
			}
		}
		if a, b := listDir(t, readyPath(dir, "files", single)), listDir(t, readyPath(dir, "files", id)); !slices.Equal(a, b) {
			t.Errorf("a batch entry holds %v, EnqueueFile's %v", b, a)
		}
	}
}

// TestBatchFull checks that a file past MaxBytes is refused alone: the
// batch keeps what it had, and commits it.
func TestBatchFull(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBytes: 100})
	src := t.TempDir()
	small, big := filepath.Join(src, "small"), filepath.Join(src, "big")
	os.WriteFile(small, make([]byte, 60), 0o644)
	os.WriteFile(big, make([]byte, 50), 0o644)
	b, _ := s.NewBatch("files")
	if err := b.AddFile(nil, small); err != nil {
		t.Fatal(err)
	}
	if err := b.AddFile(nil, big); !errors.Is(err, ErrFull) {
		t.Fatalf("AddFile past MaxBytes = %v, want ErrFull", err)
	}
	if err := b.AddBytes(nil, make([]byte, 41)); !errors.Is(err, ErrFull) {
		t.Fatalf("AddBytes past MaxBytes = %v, want ErrFull", err)
	}
	ids, err := b.Commit()
	if err != nil || len(ids) != 1 {
		t.Fatalf("Commit = %v, %v", ids, err)
	}
	if s.Bytes() != 60 || s.reserved != 0 {
		t.Fatalf("Bytes = %d, reserved = %d", s.Bytes(), s.reserved)
	}
	tmpEmpty(t, dir)
}

// TestBatchFailuresLeaveNothing checks that a batch that cannot be made
// durable, or is discarded, leaves nothing visible, staged or reserved.
func TestBatchFailuresLeaveNothing(t *testing.T) {
	srcs, _ := writeSources(t, 5)
	for _, tc := range []struct {
		name string
		prep func(s *Spool)
		end  func(b *Batch) error
		want error
	}{
		{"syncfs fails", func(s *Spool) {
			s.syncFS = func(*os.File) (bool, error) { return true, syscall.EIO }
		}, func(b *Batch) error { _, err := b.Commit(); return err }, syscall.EIO},
		{"discarded", func(*Spool) {}, func(b *Batch) error { b.Discard(); return nil }, nil},
		{"spool closed", func(*Spool) {}, func(b *Batch) error { b.s.Close(); _, err := b.Commit(); return err }, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, Options{})
			tc.prep(s)
			b, _ := s.NewBatch("files")
			for _, src := range srcs {
				if err := b.AddFile(nil, src); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.end(b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if s.Len("files") != 0 || s.Bytes() != 0 || s.reserved != 0 || b.Len() != 0 {
				t.Fatalf("Len=%d Bytes=%d reserved=%d batch=%d", s.Len("files"), s.Bytes(), s.reserved, b.Len())
			}
			tmpEmpty(t, dir)
		})
	}
}

// TestBatchFullDisk checks that a write that fails with ENOSPC says so
// and leaves nothing staged.
func TestBatchFullDisk(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	s.createData = func(string, bool) (fdFile, error) {
		fd, err := openFd("/dev/full", syscall.O_WRONLY, 0)
		return fdFile{fd, "/dev/full"}, err
	}
	srcs, _ := writeSources(t, 1)
	b, _ := s.NewBatch("files")
	err := b.AddFile(nil, srcs[0])
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "file system full") {
		t.Fatalf("AddFile on a full disk = %v", err)
	}
	if b.Len() != 0 || s.reserved != 0 {
		t.Fatalf("batch=%d reserved=%d", b.Len(), s.reserved)
	}
	tmpEmpty(t, dir)
	if _, err := s.NewBatch("Bad/Name"); err == nil {
		t.Fatal("NewBatch of an invalid queue name succeeded")
	}
	if err := b.AddFile(nil, dir); err == nil {
		t.Fatal("AddFile of a directory succeeded")
	}
}
