package segment

import (
	"errors"
	"fmt"
	"io"
)

// Trim copies the segment src to dst without its transactions before
// txid from, as a segment of its own that starts at from. It is for a
// change set that another one, holding the same transactions up to
// from-1, already stands for in part: after a crash the replicator
// captures transactions again that it had already spooled, and the two
// change sets start at the same txid but end apart. src is verified as
// it is read, so that a damaged source fails rather than yields a
// shorter segment.
func Trim(dst io.Writer, src io.Reader, from uint64) (Header, error) {
	r, err := NewReader(src, Options{})
	if err != nil {
		return Header{}, err
	}
	defer r.Close()
	h := r.Header()
	if from <= h.First || from > h.Last {
		return Header{}, fmt.Errorf("trim segment %d-%d at txid %d: not inside it, after its first", h.First, h.Last, from)
	}
	out := Header{PageSize: h.PageSize, First: from, Last: h.Last}
	w, err := NewWriter(dst, out)
	if err != nil {
		return Header{}, err
	}
	for {
		txn, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Header{}, err
		}
		keep := txn.TXID >= from
		if keep {
			if err := w.Begin(txn.TXID, txn.Time, txn.DBSize); err != nil {
				return Header{}, err
			}
		}
		for {
			p, err := r.NextPage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return Header{}, err
			}
			if keep {
				if err := w.Page(p.Pgno, p.Data); err != nil {
					return Header{}, err
				}
			}
		}
		if keep {
			if err := w.Commit(); err != nil {
				return Header{}, err
			}
		}
	}
	return out, w.Close()
}
