package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// memFile is a log held in memory that tests can change between reads.
type memFile struct{ b []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// walBuilder writes logs the way SQLite does, for cases SQLite will not
// produce on request.
type walBuilder struct {
	hdr    Header
	b      []byte
	s1, s2 uint32
}

func newWALBuilder(hdr Header) *walBuilder {
	enc := hdr.encode()
	hdr, err := parseHeader(enc[:])
	if err != nil {
		panic(err)
	}
	return &walBuilder{hdr: hdr, b: enc[:], s1: hdr.Sum1, s2: hdr.Sum2}
}

// frame appends a valid frame for pgno, filled with fill.
func (w *walBuilder) frame(pgno, commit uint32, fill byte) *walBuilder {
	page := make([]byte, w.hdr.PageSize)
	for i := range page {
		page[i] = fill
	}
	return w.framePage(pgno, commit, page)
}

func (w *walBuilder) framePage(pgno, commit uint32, page []byte) *walBuilder {
	be := binary.BigEndian
	var h [FrameHeaderSize]byte
	be.PutUint32(h[0:4], pgno)
	be.PutUint32(h[4:8], commit)
	be.PutUint32(h[8:12], w.hdr.Salt1)
	be.PutUint32(h[12:16], w.hdr.Salt2)
	w.s1, w.s2 = checksum(w.hdr.BigEndian, w.s1, w.s2, h[:8])
	w.s1, w.s2 = checksum(w.hdr.BigEndian, w.s1, w.s2, page)
	be.PutUint32(h[16:20], w.s1)
	be.PutUint32(h[20:24], w.s2)
	w.b = append(w.b, h[:]...)
	w.b = append(w.b, page...)
	return w
}

// corruptLast changes one byte of the last frame's page, leaving its
// checksum stale.
func (w *walBuilder) corruptLast() *walBuilder {
	w.b[len(w.b)-1] ^= 0xff
	return w
}

func (w *walBuilder) file() *memFile { return &memFile{b: append([]byte(nil), w.b...)} }

// naiveSum is SQLite's log checksum written independently of checksum, from
// the file format description, to check the package against.
func naiveSum(bigEndian bool, s [2]uint32, b []byte) [2]uint32 {
	word := func(p []byte) uint32 {
		if bigEndian {
			return uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
		}
		return uint32(p[3])<<24 | uint32(p[2])<<16 | uint32(p[1])<<8 | uint32(p[0])
	}
	for i := 0; i+8 <= len(b); i += 8 {
		s[0] = s[0] + word(b[i:]) + s[1]
		s[1] = s[1] + word(b[i+4:]) + s[0]
	}
	return s
}

// verifyTxns checks, without the package's scanner, that each txn is a run
// of valid frames ending in a commit frame, that the runs are contiguous
// from the first frame, and that Pages holds the latest frame of each page
// up to the commit size.
func verifyTxns(log []byte, hdr Header, txns []Txn) error {
	be := binary.BigEndian
	frameSize := int64(FrameHeaderSize + hdr.PageSize)
	sum := naiveSum(hdr.BigEndian, [2]uint32{}, log[:24])
	if sum != [2]uint32{be.Uint32(log[24:]), be.Uint32(log[28:])} {
		return errors.New("header checksum does not verify")
	}
	off := int64(HeaderSize)
	for i, txn := range txns {
		if txn.Start.Offset != off || txn.Start.Sum1 != sum[0] || txn.Start.Sum2 != sum[1] {
			return fmt.Errorf("txn %d starts at %v, want offset %d sums %x", i, txn.Start, off, sum)
		}
		latest := map[uint32]int64{}
		var commit uint32
		for commit == 0 {
			if off+frameSize > int64(len(log)) {
				return fmt.Errorf("txn %d runs past the end of the log", i)
			}
			f := log[off : off+frameSize]
			pgno := be.Uint32(f[0:])
			if pgno == 0 || be.Uint32(f[8:]) != hdr.Salt1 || be.Uint32(f[12:]) != hdr.Salt2 {
				return fmt.Errorf("txn %d: frame at %d is invalid", i, off)
			}
			sum = naiveSum(hdr.BigEndian, sum, f[:8])
			sum = naiveSum(hdr.BigEndian, sum, f[FrameHeaderSize:])
			if sum != [2]uint32{be.Uint32(f[16:]), be.Uint32(f[20:])} {
				return fmt.Errorf("txn %d: frame at %d fails its checksum", i, off)
			}
			latest[pgno] = off
			commit = be.Uint32(f[4:])
			off += frameSize
		}
		if txn.Commit != commit || txn.End.Offset != off || txn.End.Sum1 != sum[0] || txn.End.Sum2 != sum[1] {
			return fmt.Errorf("txn %d ends %v commit %d, want offset %d commit %d", i, txn.End, txn.Commit, off, commit)
		}
		var want int
		for pgno := range latest {
			if pgno <= commit {
				want++
			}
		}
		if len(txn.Pages) != want {
			return fmt.Errorf("txn %d has %d pages, want %d", i, len(txn.Pages), want)
		}
		for j, ref := range txn.Pages {
			if j > 0 && txn.Pages[j-1].Pgno >= ref.Pgno {
				return fmt.Errorf("txn %d: pages not sorted", i)
			}
			if latest[ref.Pgno] != ref.Offset {
				return fmt.Errorf("txn %d: page %d at %d, want the latest frame at %d", i, ref.Pgno, ref.Offset, latest[ref.Pgno])
			}
		}
	}
	return nil
}
