package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
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
	// Known holds addresses of chunks the store is known to hold, such as
	// those named by earlier manifests; Write uploads none of them.
	// Previous's chunks are always known.
	Known AddressSet
	// Addresser computes chunk addresses; nil means SHA256.
	Addresser Addresser
	// ReprieveWindow is how long the snapshot waits between storing a
	// reprieve for the chunks it found already stored and checking they
	// are still there (see package gc). Zero means
	// DefaultReprieveWindow; negative skips reprieves, which is safe only
	// where no garbage collector runs.
	ReprieveWindow time.Duration
	// Metadata is stored with the manifest, such as the name of the
	// writer, which a second writer that finds the manifest's key taken
	// reads back to say who holds it.
	Metadata map[string]string
}

// Stats count what a Write did.
type Stats struct {
	Chunks         int   // chunks in the snapshot
	ChunksReread   int   // chunks read from the database and hashed
	ChunksUploaded int   // chunks this snapshot stored
	ChunksExisting int   // reread chunks the store already held
	BytesUploaded  int64 // compressed chunk bytes plus the manifest
}

// Write stores a snapshot of the database image in src, pageCount pages
// of pageSize bytes, as of txid, which committed at t. Chunks go up first,
// create-only; the manifest goes up last, create-only, once every chunk
// it names is confirmed present: stored by this call, found present by a
// create-only put, or named by Previous or Known. A chunk that a garbage
// collector removes while a manifest naming it is still the base of a
// snapshot in progress would break that promise, so collection must keep
// every chunk of the newest manifest.
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
	for a := range opts.Known {
		known.set[a] = struct{}{}
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
		if sameNames {
			known.set.AddManifest(prev)
		}
		if prev.PageSize != pageSize || !sameNames {
			// A page size change (VACUUM) rewrites the whole file, so a
			// dirty set from the WAL says nothing about which chunks
			// kept their bytes; a new scheme or a new key (a rotation)
			// names every chunk anew.
			prev = nil
		}
	}
	var reread []int
	for i := range m.Chunks {
		if prev != nil && i < len(prev.Chunks) && !opts.Dirty.Has(i) && prev.ChunkLen(i) == chunkLen(size, i) {
			m.Chunks[i] = prev.Chunks[i]
			continue
		}
		reread = append(reread, i)
	}

	par := parallelismOr(opts.Parallelism, 4)
	enc, err := newEncoder(par)
	if err != nil {
		return fail(err)
	}
	defer enc.Close()
	var uploaded, existing atomic.Int64
	var bytesUp atomic.Int64
	var reliedMu sync.Mutex
	var relied []int // chunks found stored that nothing known names
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
			if known.has(a) {
				existing.Add(1)
				return nil
			}
			comp = enc.EncodeAll(b, comp[:0])
			key := ChunkKey(a)
			_, err := store.Put(ctx, key, bytes.NewReader(comp), objstore.PutOptions{IfNoneMatch: true})
			switch {
			case err == nil:
				uploaded.Add(1)
				bytesUp.Add(int64(len(comp)))
			case objstore.IsPreconditionFailed(err):
				existing.Add(1)
				reliedMu.Lock()
				relied = append(relied, i)
				reliedMu.Unlock()
			default:
				return &ChunkError{Key: key, Index: i, Err: err}
			}
			known.add(a)
			return nil
		}
	})
	stats := Stats{
		Chunks:         len(m.Chunks),
		ChunksReread:   len(reread),
		ChunksUploaded: int(uploaded.Load()),
		ChunksExisting: int(existing.Load()),
		BytesUploaded:  bytesUp.Load(),
	}
	if err != nil {
		return Manifest{}, stats, wrap(err)
	}
	if len(relied) > 0 && opts.ReprieveWindow >= 0 {
		n, err := reprieve(ctx, store, src, &m, size, relied, reread, opts.ReprieveWindow, par)
		stats.ChunksUploaded += n
		if err != nil {
			return Manifest{}, stats, wrap(err)
		}
	}
	m.DBHash = DBHash(pageSize, pageCount, m.Chunks)
	n, err := putManifest(ctx, store, &m, opts.Metadata)
	stats.BytesUploaded += n
	if err != nil {
		return Manifest{}, stats, wrap(err)
	}
	return m, stats, nil
}

// putManifest stores m create-only and returns the bytes it uploaded. A
// manifest already there with the same bytes is success: a put whose
// response was lost, retried, finds its own manifest.
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
	if rerr == nil && bytes.Equal(have, data) {
		return 0, nil
	}
	return 0, fmt.Errorf("manifest %s already exists with different content (another writer, or a different commit time for the same txid): %w", key, err)
}

// knownSet is an AddressSet that workers share.
type knownSet struct {
	mu  sync.Mutex
	set AddressSet
}

func (k *knownSet) has(a Address) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.set[a]
	return ok
}

func (k *knownSet) add(a Address) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.set[a] = struct{}{}
}

// reprieve makes the chunks at indexes relied, which m names and the store
// already held, safe from a garbage collector that took them for garbage:
// it stores a reprieve naming them, waits out window, and uploads again
// any that went meanwhile. It returns how many it uploaded again. See
// package gc for why this is enough.
func reprieve(ctx context.Context, store objstore.Store, src io.ReaderAt, m *Manifest, size int64, relied, reread []int, window time.Duration, par int) (int, error) {
	if window == 0 {
		window = DefaultReprieveWindow
	}
	// The reprieve names the chunks this snapshot uploaded too: the wait
	// makes the snapshot long, and a chunk no manifest names yet must not
	// age past a collector's grace unprotected meanwhile.
	addrs := make([]Address, 0, len(reread))
	for _, i := range reread {
		addrs = append(addrs, m.Chunks[i])
	}
	nonce := make([]byte, 8)
	rand.Read(nonce)
	key := layout.ReprieveKey(m.TXID, hex.EncodeToString(nonce))
	if _, err := store.Put(ctx, key, bytes.NewReader(MarshalReprieve(addrs)), objstore.PutOptions{}); err != nil {
		return 0, fmt.Errorf("store reprieve: %w", err)
	}
	t := time.NewTimer(window)
	select {
	case <-ctx.Done():
		t.Stop()
		return 0, ctx.Err()
	case <-t.C:
	}
	enc, err := newEncoder(par)
	if err != nil {
		return 0, err
	}
	defer enc.Close()
	var again atomic.Int64
	err = forEach(ctx, par, relied, func() func(context.Context, int) error {
		buf := make([]byte, ChunkSize)
		return func(ctx context.Context, i int) error {
			key := ChunkKey(m.Chunks[i])
			_, err := store.Head(ctx, key)
			if err == nil {
				return nil
			}
			if !errors.Is(err, objstore.ErrNotFound) {
				return &ChunkError{Key: key, Index: i, Err: err}
			}
			b := buf[:chunkLen(size, i)]
			if err := readChunk(src, b, int64(i)*ChunkSize); err != nil {
				return fmt.Errorf("chunk %d: %w", i, err)
			}
			_, err = store.Put(ctx, key, bytes.NewReader(enc.EncodeAll(b, nil)), objstore.PutOptions{IfNoneMatch: true})
			if err != nil && !objstore.IsPreconditionFailed(err) {
				return &ChunkError{Key: key, Index: i, Err: err}
			}
			again.Add(1)
			return nil
		}
	})
	return int(again.Load()), err
}
