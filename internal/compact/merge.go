package compact

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
)

// errDiffer means two change sets hold the same txid differently. Ferry
// never names two states with one txid, so that is damage of some kind,
// and neither is deleted for the other.
var errDiffer = errors.New("change sets disagree")

// settle deletes the change sets within cover that it holds intact and
// identically (see the package documentation).
func (c *compactor) settle(ctx context.Context, cover seg, within []seg) error {
	if c.o.DryRun {
		c.skip[cover.Key] = true // merged into nothing else in a dry run's plan
		return c.deleteAll(ctx, within)
	}
	cs, err := c.stage(ctx, cover)
	switch {
	case err == nil:
	case gone(err):
		c.skip[cover.Key] = true
		return nil
	case isDamage(err):
		c.damaged(cover.Key, fmt.Errorf("%w; the %d change sets within it are kept", err, len(within)))
		return nil
	default:
		return err
	}
	defer cs.remove()
	cur := &cursor{st: cs}
	defer cur.close()
	var doomed []seg
	for _, w := range within {
		ws, err := c.stage(ctx, w)
		switch {
		case err == nil:
			err = cur.same(ws)
			ws.remove()
			switch {
			case err == nil:
				doomed = append(doomed, w)
			case isDamage(err):
				c.damaged(w.Key, fmt.Errorf("within %s: %w", cover.Key, err))
				c.skip[cover.Key] = true
			default:
				return err
			}
		case gone(err):
		case isDamage(err):
			// The cover holds every transaction it did, intact.
			c.o.Log.Warn("compact: deleting a damaged change set that an intact one holds", "key", w.Key, "within", cover.Key, "err", err)
			doomed = append(doomed, w)
		default:
			return err
		}
	}
	return c.deleteAll(ctx, doomed)
}

// merge merges the change sets of run, splitting it where one is damaged,
// the page size changes or the pages would outgrow a change set.
func (c *compactor) merge(ctx context.Context, run []seg) error {
	if c.o.DryRun {
		m := Merged{Key: layout.SegmentKey(run[0].First, run[len(run)-1].Last), First: run[0].First, Last: run[len(run)-1].Last, Replaces: len(run)}
		for _, s := range run {
			m.Size += s.Size
		}
		c.rep.Merged = append(c.rep.Merged, m)
		return c.deleteAll(ctx, run)
	}
	var all, group []*staged
	defer func() {
		for _, st := range all {
			st.remove()
		}
	}()
	var pages uint64
	flush := func() error {
		g := group
		group, pages = nil, 0
		if len(g) < 2 {
			return nil
		}
		return c.write(ctx, g)
	}
	for _, s := range run {
		st, err := c.stage(ctx, s)
		switch {
		case err == nil:
		case gone(err):
			// Another compaction, or gc, got here first: the listing is
			// stale, and the next run starts from a fresh one.
			c.o.Log.Info("compact: a change set went away since the listing; leaving its run", "key", s.Key)
			return nil
		case isDamage(err):
			c.damaged(s.Key, err)
			if err := flush(); err != nil {
				return err
			}
			continue
		default:
			return err
		}
		all = append(all, st)
		if len(group) > 0 && (st.info.PageSize != group[0].info.PageSize || pages+st.info.Pages > segment.MaxPages) {
			if err := flush(); err != nil {
				return err
			}
		}
		group = append(group, st)
		pages += st.info.Pages
	}
	return flush()
}

// write merges g, verified and contiguous, into one change set, stores it
// create-only, reads it back and compares it with g, and only then
// deletes g.
func (c *compactor) write(ctx context.Context, g []*staged) error {
	first, last := g[0].First, g[len(g)-1].Last
	key := layout.SegmentKey(first, last)
	f, err := os.CreateTemp(c.dir, "merged-*")
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 256<<10)
	w, err := segment.NewWriter(bw, segment.Header{PageSize: g[0].info.PageSize, First: first, Last: last})
	if err != nil {
		return fmt.Errorf("compact %s: %w", key, err)
	}
	for _, st := range g {
		if err := st.copyTo(w); err != nil {
			return fmt.Errorf("compact %s: %w", key, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("compact %s: %w", key, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("compact %s: %w", key, err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// Create-only: the key may already hold what an earlier run stored
	// before it was stopped, or what another compaction stored. That one
	// is checked below like our own; it must hold the same transactions.
	_, err = c.store.Put(ctx, key, f, objstore.PutOptions{IfNoneMatch: true, SHA256: hex.EncodeToString(h.Sum(nil))})
	if objstore.IsPreconditionFailed(err) {
		c.o.Log.Info("compact: the merged change set is already stored; checking it", "key", key)
	} else if err != nil {
		return fmt.Errorf("compact: %w", err)
	}

	// Read back what the store holds, not what was sent: the small ones
	// go only once the store is proven to hold their transactions.
	back, err := c.stage(ctx, seg{Segment: layout.Segment{Key: key, First: first, Last: last, Size: size}})
	switch {
	case err == nil:
	case gone(err):
		return nil
	case isDamage(err):
		c.damaged(key, fmt.Errorf("read back: %w; the change sets it merges are kept", err))
		return nil
	default:
		return err
	}
	defer back.remove()
	cur := &cursor{st: back}
	defer cur.close()
	small := make([]seg, len(g))
	for i, st := range g {
		if err := cur.same(st); err != nil {
			if isDamage(err) {
				c.damaged(key, fmt.Errorf("read back: %w; the change sets it merges are kept", err))
				return nil
			}
			return err
		}
		small[i] = st.seg
	}
	c.rep.Merged = append(c.rep.Merged, Merged{Key: key, First: first, Last: last, Size: back.info.Size, Replaces: len(g)})
	c.o.Log.Info("compact: merged change sets", "key", key, "replaces", len(g), "size", back.info.Size)
	return c.deleteAll(ctx, small)
}

// staged is a change set downloaded into a private file and verified whole.
type staged struct {
	seg
	path string
	info segment.Info
}

// stage downloads s and verifies it whole. A change set whose header names
// other txids than its key is damage: restore would reject it too.
func (c *compactor) stage(ctx context.Context, s seg) (*staged, error) {
	f, err := os.CreateTemp(c.dir, "seg-*")
	if err != nil {
		return nil, fmt.Errorf("compact: %w", err)
	}
	st := &staged{seg: s, path: f.Name()}
	err = func() error {
		defer f.Close()
		rc, _, err := c.store.Get(ctx, s.Key, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("fetch %s: %w", s.Key, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		st.info, err = segment.Verify(f, segment.Options{Key: s.Key})
		if err == nil && (st.info.First != s.First || st.info.Last != s.Last) {
			err = fmt.Errorf("segment %s: %w: it holds txids %d-%d", s.Key, objstore.ErrCorrupt, st.info.First, st.info.Last)
		}
		return err
	}()
	if err != nil {
		os.Remove(st.path)
		return nil, err
	}
	return st, nil
}

func (st *staged) remove() { os.Remove(st.path) }

func (st *staged) open() (*os.File, *segment.Reader, error) {
	f, err := os.Open(st.path)
	if err != nil {
		return nil, nil, err
	}
	r, err := segment.NewReader(bufio.NewReaderSize(f, 64<<10), segment.Options{Key: st.Key})
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, r, nil
}

// copyTo copies every transaction of st into w as it is: txid, commit
// time, database size and each page.
func (st *staged) copyTo(w *segment.Writer) error {
	f, r, err := st.open()
	if err != nil {
		return err
	}
	defer f.Close()
	defer r.Close()
	for {
		t, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.Begin(t.TXID, t.Time, t.DBSize); err != nil {
			return err
		}
		for {
			p, err := r.NextPage()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if err := w.Page(p.Pgno, p.Data); err != nil {
				return err
			}
		}
		if err := w.Commit(); err != nil {
			return err
		}
	}
}

// cursor reads a long change set forward, for comparing shorter ones
// against it in txid order without decoding it once for each.
type cursor struct {
	st  *staged
	f   *os.File
	r   *segment.Reader
	pos uint64 // the txid r.Next returns next
}

// to positions the cursor at txid and returns its record; its pages
// follow.
func (c *cursor) to(txid uint64) (segment.Txn, error) {
	if txid < c.st.First || txid > c.st.Last {
		return segment.Txn{}, fmt.Errorf("%w: %s does not hold txid %d", errDiffer, c.st.Key, txid)
	}
	if c.r == nil || c.pos > txid {
		c.close()
		f, r, err := c.st.open()
		if err != nil {
			return segment.Txn{}, err
		}
		c.f, c.r, c.pos = f, r, c.st.First
	}
	for {
		t, err := c.r.Next()
		if err != nil {
			return segment.Txn{}, err
		}
		c.pos = t.TXID + 1
		if t.TXID == txid {
			return t, nil
		}
	}
}

func (c *cursor) close() {
	if c.r != nil {
		c.r.Close()
		c.f.Close()
		c.r, c.f = nil, nil
	}
}

// same compares every transaction of s with the cursor's change set: the
// same commit time, database size and pages, byte for byte. Reading both
// to each commit record re-proves both chains.
func (c *cursor) same(s *staged) error {
	if s.info.PageSize != c.st.info.PageSize {
		return fmt.Errorf("%w: %s has %d-byte pages, %s %d-byte ones", errDiffer, s.Key, s.info.PageSize, c.st.Key, c.st.info.PageSize)
	}
	f, r, err := s.open()
	if err != nil {
		return err
	}
	defer f.Close()
	defer r.Close()
	for {
		t, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		u, err := c.to(t.TXID)
		if err != nil {
			return err
		}
		if !t.Time.Equal(u.Time) || t.DBSize != u.DBSize {
			return fmt.Errorf("%w: txid %d committed at %s leaving %d pages in %s, at %s leaving %d pages in %s",
				errDiffer, t.TXID, t.Time, t.DBSize, s.Key, u.Time, u.DBSize, c.st.Key)
		}
		for {
			p, perr := r.NextPage()
			q, qerr := c.r.NextPage()
			if perr == io.EOF && qerr == io.EOF {
				break
			}
			if perr != nil && perr != io.EOF {
				return perr
			}
			if qerr != nil && qerr != io.EOF {
				return qerr
			}
			if perr == io.EOF || qerr == io.EOF || p.Pgno != q.Pgno || !bytes.Equal(p.Data, q.Data) {
				return fmt.Errorf("%w: txid %d changes other pages in %s than in %s", errDiffer, t.TXID, s.Key, c.st.Key)
			}
		}
	}
}
