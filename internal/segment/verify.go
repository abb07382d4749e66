package segment

import (
	"fmt"
	"io"
)

// Verify reads the whole segment in r and checks every rule of the format
// and every checksum. It returns the segment's Info, or the first problem
// found.
func Verify(r io.Reader, opts Options) (Info, error) {
	sr, err := NewReader(r, opts)
	if err != nil {
		return Info{}, err
	}
	defer sr.Close()
	for {
		if _, err := sr.Next(); err == io.EOF {
			return sr.Info(), nil
		} else if err != nil {
			return Info{}, err
		}
	}
}

// Open verifies the whole segment in src, then rewinds src and returns a
// Reader over it for a second pass, so that a restore applies no page of a
// segment it has not checked to the end. src is typically a private
// temporary file that the segment was downloaded into; it must not change
// between the passes. The second pass repeats every check, so a file that
// did change still ends in an error, at the latest at the commit record of
// the first transaction that differs.
func Open(src io.ReadSeeker, opts Options) (*Reader, Info, error) {
	start, err := src.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, Info{}, fmt.Errorf("open segment %s: %w", keyName(opts.Key), err)
	}
	info, err := Verify(src, opts)
	if err != nil {
		return nil, Info{}, err
	}
	if _, err := src.Seek(start, io.SeekStart); err != nil {
		return nil, Info{}, fmt.Errorf("open segment %s: rewind: %w", keyName(opts.Key), err)
	}
	sr, err := NewReader(src, opts)
	if err != nil {
		return nil, Info{}, err
	}
	return sr, info, nil
}
