package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// ChunkSet is a set of chunk indexes.
type ChunkSet map[int]struct{}

// Add adds chunk i.
func (s ChunkSet) Add(i int) { s[i] = struct{}{} }

// AddPage adds the chunk that holds page pgno (numbered from 1).
func (s ChunkSet) AddPage(pageSize int, pgno uint32) {
	s.Add(int(int64(pgno-1) * int64(pageSize) / ChunkSize))
}

// Has reports whether chunk i is in the set.
func (s ChunkSet) Has(i int) bool { _, ok := s[i]; return ok }

// AddressSet is a set of chunk addresses.
type AddressSet map[Address]struct{}

// AddManifest adds every chunk m names.
func (s AddressSet) AddManifest(m *Manifest) {
	for _, a := range m.Chunks {
		s[a] = struct{}{}
	}
}

// Options tune Write.
type Options struct {
	// Parallelism is how many chunks are read, hashed and uploaded at
	// once; 0 means 4. Memory is about 130 KiB per unit.
	Parallelism int
	// Previous is the last snapshot of this database along an unbroken
	// chain of WAL transactions. Write reuses its address for every chunk
	// that is not in Dirty, without reading it. Leave it nil when
	// continuity broke: every chunk is then reread.
	Previous *Manifest
	// Dirty holds every chunk that contains a page written since
	// Previous. It is required with Previous; an empty set means nothing
	// changed.
	Dirty ChunkSet
	// Stored are manifests whose chunks the store holds, where they say,
	// such as earlier snapshots kept on the replica: Write uploads none of
	// the chunks they name, and points at their copies instead.
	// Previous's chunks are always among them.
	Stored []*Manifest
	// Addresser computes chunk addresses; nil means SHA256.
	Addresser Addresser
	// PackBytes is the size at which a pack is closed and the next one
	// started; 0 means PackSize.
	PackBytes int
	// Metadata is stored with the manifest, such as the name of the
	// writer, which a second writer that finds the manifest's key taken
	// reads back to say who holds it.
	Metadata map[string]string

	// packIDs is where pack ids come from; nil means crypto/rand. Tests
	// set it to make a snapshot's bytes repeatable.
	packIDs io.Reader
}

// Stats count what a Write did.
type Stats struct {
	Chunks         int   // chunks in the snapshot
	ChunksReread   int   // chunks read from the database and hashed
	ChunksUploaded int   // chunks this snapshot stored
	ChunksExisting int   // reread chunks the store already held
	ChunksRepacked int   // unchanged chunks stored again, out of sparse packs
	Packs          int   // packs this snapshot stored: one request each
	BytesUploaded  int64 // compressed chunk bytes plus the manifest
}

// Write stores a snapshot of the database image in src, pageCount pages
// of pageSize bytes, as of txid, which committed at t. The chunks it has
// to store go up first, in packs of about PackSize, each a new object;
// the manifest goes up last, create-only, once every chunk it names is
// present: stored by this call, or named by Previous or Stored. A pack
// that a garbage collector removes while a manifest naming it is still
// the base of a snapshot in progress would break that promise, so
// collection must keep every pack of the newest manifest, and every pack
// younger than the longest a snapshot takes.
//
// src must hold the database at txid for the whole call, and must allow
// concurrent ReadAt calls, as *os.File does.
func Write(ctx context.Context, store objstore.Store, src io.ReaderAt, pageSize int, pageCount uint32, txid uint64, t time.Time, opts Options) (Manifest, Stats, error) {
	wrap := func(err error) error { return fmt.Errorf("snapshot at txid %d: %w", txid, err) }
	fail := func(err error) (Manifest, Stats, error) { return Manifest{}, Stats{}, wrap(err) }
	addr := opts.Addresser
	if addr == nil {
		addr = SHA256{}
	}
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, 1<<63-1)) {
		return fail(fmt.Errorf("time %s cannot be stored", t))
	}
	if err := validShape(pageSize, pageCount, txid, t.UnixNano()); err != nil {
		return fail(err)
	}
	m := Manifest{TXID: txid, Time: t.UTC(), PageSize: pageSize, PageCount: pageCount, Scheme: addr.Scheme(), AddressKey: addr.KeyTag()}
	size := m.Size()
	m.Chunks = make([]Address, ChunkCount(size))

	known := &knownSet{set: AddressSet{}}
	var stored []*Manifest
	for _, sm := range append([]*Manifest{opts.Previous}, opts.Stored...) {
		if sm != nil && sm.Scheme == addr.Scheme() && sm.AddressKey == addr.KeyTag() {
			known.set.AddManifest(sm)
			stored = append(stored, sm)
		}
	}
	prev := opts.Previous
	if prev != nil {
		if opts.Dirty == nil {
			return fail(errors.New("a previous snapshot was given without the set of chunks dirtied since"))
		}
		if err := prev.Validate(); err != nil {
			return fail(fmt.Errorf("previous snapshot %s: %w", prev.Key(), err))
		}
		sameNames := prev.Scheme == addr.Scheme() && prev.AddressKey == addr.KeyTag()
		if prev.PageSize != pageSize || !sameNames {
			// A page size change (VACUUM) rewrites the whole file, so a
			// dirty set from the WAL says nothing about which chunks
			// kept their bytes; a new scheme or a new key (a rotation)
			// names every chunk anew.
			prev = nil
		}
	}
	var reread, kept []int
	for i := range m.Chunks {
		if prev != nil && i < len(prev.Chunks) && !opts.Dirty.Has(i) && prev.ChunkLen(i) == chunkLen(size, i) {
			m.Chunks[i] = prev.Chunks[i]
			kept = append(kept, i)
			continue
		}
		reread = append(reread, i)
	}
	repack := sparse(prev, kept)
	for i := range repack {
		reread = append(reread, i)
	}
	slices.Sort(reread)

	par := parallelismOr(opts.Parallelism, 4)
	enc, err := newEncoder(par)
	if err != nil {
		return fail(err)
	}
	defer enc.Close()
	packs := newPacker(store, opts.packIDs, cmp.Or(opts.PackBytes, PackSize))
	var existing atomic.Int64
	repacked := &knownSet{set: AddressSet{}}
	err = forEach(ctx, par, reread, func() func(context.Context, int) error {
		buf := make([]byte, ChunkSize)
		var comp []byte
		return func(ctx context.Context, i int) error {
			b := buf[:chunkLen(size, i)]
			if err := readChunk(src, b, int64(i)*ChunkSize); err != nil {
				return fmt.Errorf("chunk %d: %w", i, err)
			}
			a := addr.Address(b)
			m.Chunks[i] = a
			if repack.Has(i) {
				if !repacked.claim(a) {
					return nil
				}
			} else if !known.claim(a) {
				existing.Add(1)
				return nil
			}
			comp = enc.EncodeAll(b, comp[:0])
			return packs.add(ctx, a, comp)
		}
	})
	if err == nil {
		err = packs.flush(ctx)
	}
	stats := Stats{
		Chunks:         len(m.Chunks),
		ChunksReread:   len(reread),
		ChunksUploaded: len(packs.locs),
		ChunksExisting: int(existing.Load()),
		ChunksRepacked: len(repacked.set),
		Packs:          packs.puts,
		BytesUploaded:  packs.bytes,
	}
	if err != nil {
		return Manifest{}, stats, wrap(err)
	}
	if err := m.locate(packs, stored); err != nil {
		return Manifest{}, stats, wrap(err)
	}
	m.DBHash = DBHash(pageSize, pageCount, m.Chunks)
	n, err := putManifest(ctx, store, &m, opts.Metadata)
	stats.BytesUploaded += n
	if err != nil {
		return Manifest{}, stats, wrap(err)
	}
	return m, stats, nil
}

// locate fills in where each chunk of m is stored: in a pack this
// snapshot stored, or where one of stored has it (in a pack or loose).
func (m *Manifest) locate(packs *packer, stored []*Manifest) error {
	index := map[PackID]uint32{}
	packOf := func(pk Pack) uint32 {
		p, ok := index[pk.ID]
		if !ok {
			p = uint32(len(m.Packs))
			index[pk.ID] = p
			m.Packs = append(m.Packs, pk)
		}
		return p
	}
	type place struct {
		in  *Manifest
		loc Loc
	}
	before := map[Address]place{}
	for _, sm := range stored {
		for i, a := range sm.Chunks {
			if _, ok := before[a]; !ok {
				before[a] = place{sm, sm.Loc(i)}
			}
		}
	}
	m.Locs = make([]Loc, len(m.Chunks))
	for i, a := range m.Chunks {
		if l, ok := packs.locs[a]; ok {
			l.Pack = packOf(packs.packs[l.Pack])
			m.Locs[i] = l
			continue
		}
		pl, ok := before[a]
		if !ok {
			return fmt.Errorf("chunk %d (%s) was neither stored nor known", i, ChunkKey(a))
		}
		l := pl.loc
		if l.Pack != Loose {
			l.Pack = packOf(pl.in.Packs[l.Pack])
		}
		m.Locs[i] = l
	}
	return nil
}

// sparse returns the chunks of kept, which a snapshot takes over from prev
// unchanged, whose packs would hold less than half of their bytes for the
// new snapshot: those are stored again, in the new snapshot's packs, so
// that no pack stays for the sake of a few of its chunks while the rest
// of it is garbage. This bounds what the newest snapshot's packs hold to
// about twice the bytes it needs, at the cost of storing again, now and
// then, chunks that did not change.
func sparse(prev *Manifest, kept []int) ChunkSet {
	out := ChunkSet{}
	if prev == nil || prev.Locs == nil {
		return out
	}
	live := make([]int64, len(prev.Packs))
	counted := map[Loc]bool{}
	for _, i := range kept {
		if l := prev.Locs[i]; l.Pack != Loose && !counted[l] {
			counted[l] = true
			live[l.Pack] += int64(l.Length)
		}
	}
	for _, i := range kept {
		if l := prev.Locs[i]; l.Pack != Loose && 2*live[l.Pack] < int64(prev.Packs[l.Pack].Size) {
			out.Add(i)
		}
	}
	return out
}

// putManifest stores m create-only and returns the bytes it uploaded. A
// manifest already there for the same image is success, and takes m's
// place: a put whose response was lost, retried, finds its own manifest,
// and a snapshot of the same image taken again (after a crash, say)
// stored its chunks in other packs, which gc collects. If that manifest's
// packs are no longer whole, m replaces it instead.
func putManifest(ctx context.Context, store objstore.Store, m *Manifest, meta map[string]string) (int64, error) {
	data, err := m.MarshalBinary()
	if err != nil {
		return 0, err
	}
	key := m.Key()
	_, err = store.Put(ctx, key, bytes.NewReader(data), objstore.PutOptions{IfNoneMatch: true, Metadata: meta})
	if err == nil {
		return int64(len(data)), nil
	}
	if !objstore.IsPreconditionFailed(err) {
		return 0, fmt.Errorf("store manifest: %w", err)
	}
	have, rerr := readManifest(ctx, store, key)
	if rerr == nil {
		if h, perr := parseManifest(have, key); perr == nil && sameImage(&h, m) {
			cerr := Check(ctx, store, h, 4)
			if cerr == nil {
				*m = h
				return 0, nil
			}
			if objstore.IsNotFound(cerr) || errors.Is(cerr, objstore.ErrCorrupt) {
				// The stored manifest names a pack that is gone or
				// damaged (a scrub deleted it, and this snapshot stores
				// the chunks anew): this one, of the same image, takes
				// its place.
				if _, err := store.Put(ctx, key, bytes.NewReader(data), objstore.PutOptions{Metadata: meta}); err != nil {
					return 0, fmt.Errorf("replace manifest %s, whose packs are damaged (%v): %w", key, cerr, err)
				}
				return int64(len(data)), nil
			}
			return 0, fmt.Errorf("check the manifest already at %s: %w", key, cerr)
		}
	}
	return 0, fmt.Errorf("manifest %s already exists with different content (another writer, or a different commit time for the same txid): %w", key, err)
}

// sameImage reports whether a and b are snapshots of the same database
// image at the same txid and commit time, named the same way, wherever
// their chunks are stored.
func sameImage(a, b *Manifest) bool {
	return a.TXID == b.TXID && a.Time.Equal(b.Time) && a.PageSize == b.PageSize && a.PageCount == b.PageCount &&
		a.Scheme == b.Scheme && a.AddressKey == b.AddressKey && a.DBHash == b.DBHash
}

// knownSet is an AddressSet that workers share.
type knownSet struct {
	mu  sync.Mutex
	set AddressSet
}

// claim adds a to the set and reports whether it was new: the caller
// that claims an address stores its chunk, and any other that meets the
// same content in this snapshot relies on that.
func (k *knownSet) claim(a Address) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.set[a]; ok {
		return false
	}
	k.set[a] = struct{}{}
	return true
}
