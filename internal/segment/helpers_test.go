package segment

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// txnModel is a transaction as a test states it.
type txnModel struct {
	TXID   uint64
	Time   time.Time
	DBSize uint32
	Pages  []Page
}

// tb is what both *testing.T and *rapid.T offer.
type tb interface {
	Helper()
	Fatal(args ...any)
}

// encode writes txns as a segment with header h, failing the test on any
// error.
func encode(t tb, h Header, txns []txnModel) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, txn := range txns {
		if err := w.Begin(txn.TXID, txn.Time, txn.DBSize); err != nil {
			t.Fatal(err)
		}
		for _, p := range txn.Pages {
			if err := w.Page(p.Pgno, p.Data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decode reads a whole segment back into models. It returns the
// transactions whose commit was proven before the first error, and the
// error.
func decode(data []byte) (Header, []txnModel, Info, error) {
	r, err := NewReader(bytes.NewReader(data), Options{Key: "test"})
	if err != nil {
		return Header{}, nil, Info{}, err
	}
	defer r.Close()
	var out []txnModel
	for {
		txn, err := r.Next()
		if err == io.EOF {
			return r.Header(), out, r.Info(), nil
		}
		if err != nil {
			return r.Header(), out, Info{}, err
		}
		m := txnModel{TXID: txn.TXID, Time: txn.Time, DBSize: txn.DBSize}
		for {
			p, err := r.NextPage()
			if err == io.EOF {
				break
			}
			if err != nil {
				return r.Header(), out, Info{}, err
			}
			m.Pages = append(m.Pages, Page{Pgno: p.Pgno, Data: bytes.Clone(p.Data)})
		}
		out = append(out, m)
	}
}

// sampleTxns is a small, valid segment body used by the damage tests.
func sampleTxns(pageSize int) (Header, []txnModel) {
	page := func(fill byte) []byte {
		b := bytes.Repeat([]byte{fill}, pageSize)
		copy(b, "SQLite format 3\x00")
		b[pageSize-1] = fill ^ 0x5a
		return b
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	txns := []txnModel{
		{TXID: 7, Time: t0, DBSize: 3, Pages: []Page{{1, page(1)}, {3, page(3)}}},
		{TXID: 8, Time: t0.Add(time.Millisecond), DBSize: 3},
		{TXID: 9, Time: t0.Add(2 * time.Millisecond), DBSize: 4, Pages: []Page{{2, page(2)}, {4, page(4)}}},
	}
	return Header{PageSize: pageSize, First: 7, Last: 9}, txns
}

// isDetected reports whether err is the answer a damaged segment must get.
func isDetected(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce) || errors.Is(err, ErrVersion)
}
