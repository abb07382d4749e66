package layout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Lister is what Read needs of a store.
type Lister interface {
	List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error]
}

// HeadReader says what the object under a first-only change-set key
// (ChangeSetKey) holds, from its first bytes: the key names its first
// txid only. Package segment, which owns the formats, provides the one
// ferry uses (segment.Heads); this package cannot read a header itself
// without importing the package that imports it.
type HeadReader interface {
	// ReadHead fails with an error matching objstore.ErrCorrupt when the
	// object is neither a change set nor a break marker, and with one
	// matching objstore.ErrNotFound when it is gone.
	ReadHead(ctx context.Context, info objstore.Info) (Head, error)
}

// Head is what an object under a change-set key says of itself.
type Head struct {
	First uint64
	// Last is a change set's last txid.
	Last uint64
	// Break marks a break marker: the chain of change sets ends at
	// First-1, and carries on only from a newer snapshot.
	Break bool
}

// headParallelism bounds the header reads of one Read: enough to hide a
// round trip each, few enough to stay polite to a store.
const headParallelism = 16

// Kind selects the directories Read lists. Chunks outnumber everything
// else by far, so a caller that needs no chunks does not pay for them.
type Kind uint8

// The kinds of object a replica holds.
const (
	Snapshots Kind = 1 << iota
	Segments
	Chunks
	Packs

	All = Snapshots | Segments | Chunks | Packs
)

// Snapshot is a snapshot's manifest as listed.
type Snapshot struct {
	Key  string
	TXID uint64
	Size int64 // bytes of the manifest
}

// Segment is a change set as listed: its key, its txid range and size.
// A restore's plan shows it, hence the JSON names.
type Segment struct {
	Key   string `json:"key"`
	First uint64 `json:"first_txid"`
	Last  uint64 `json:"last_txid"`
	Size  int64  `json:"size"`
}

// Chunk is a chunk as listed, with its modification time by the store's
// clock, from which gc tells its age.
type Chunk struct {
	Key      string
	Addr     [32]byte
	Size     int64
	Modified time.Time
}

// Pack is a pack as listed, with its modification time by the store's
// clock, from which gc tells its age.
type Pack struct {
	Key      string
	ID       [16]byte
	Size     int64
	Modified time.Time
}

// Break is a break marker as listed: the chain of change sets ends at
// TXID-1, and a follower waiting for TXID must go on from a newer
// snapshot. It is neither a change set nor damage.
type Break struct {
	Key  string `json:"key"`
	TXID uint64 `json:"txid"`
	Size int64  `json:"size"`
}

// Foreign is an object in one of the replica's directories whose key names
// nothing of ferry's.
type Foreign struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	Why  string `json:"why"`
	// Err is set for an object under one of ferry's own keys whose
	// header could not be used: damaged, or encrypted with a key the
	// reader lacks. Such an object is ferry's, and a problem.
	Err error `json:"-"`
}

// Listing is what a replica holds, by key, and for first-only change-set
// keys by the header of the object too: nothing else in it has been read.
// Each list is in txid order for snapshots, segments (by first txid, then
// last) and breaks, in key order for the rest.
type Listing struct {
	Snapshots []Snapshot
	Segments  []Segment
	Breaks    []Break
	Chunks    []Chunk
	Packs     []Pack
	Foreign   []Foreign
}

// Newest returns the highest txid any listed manifest or change set names,
// 0 when there is none. It says nothing of whether that txid restores.
func (l *Listing) Newest() uint64 {
	var n uint64
	for _, s := range l.Snapshots {
		n = max(n, s.TXID)
	}
	for _, s := range l.Segments {
		n = max(n, s.Last)
	}
	// A marker takes its txid's key: numbering on from below it would
	// store a change set under a key that is already taken.
	for _, b := range l.Breaks {
		n = max(n, b.TXID)
	}
	return n
}

// Read lists the directories that kinds selects, one LIST each (paged
// underneath), and parses every key. See the package documentation for
// who may call it, and when. heads reads the header of each object under
// a first-only change-set key, whose last txid the key does not say; it
// may be nil when kinds does not include Segments.
//
// Manifests are listed before chunks: a manifest is written only once
// every chunk it names is stored, so any chunk a listed manifest names is
// in the chunk listing that follows, even while a snapshot is being
// written. Listed the other way round, a snapshot finished in between
// would seem to lack its chunks.
func Read(ctx context.Context, store Lister, kinds Kind, heads HeadReader) (Listing, error) {
	if kinds&Segments != 0 && heads == nil {
		return Listing{}, errors.New("list segments: no header reader for first-only keys")
	}
	var l Listing
	var unread []objstore.Info
	addSegment := func(info objstore.Info) error {
		if _, err := ParseChangeSetKey(info.Key); err == nil {
			unread = append(unread, info)
			return nil
		}
		return l.addSegment(info)
	}
	for _, d := range []struct {
		kind Kind
		dir  string
		add  func(objstore.Info) error
	}{
		{Snapshots, snapshotsDir, l.addSnapshot},
		{Segments, segmentsDir, addSegment},
		{Chunks, chunksDir, l.addChunk},
		{Packs, packsDir, l.addPack},
	} {
		if kinds&d.kind == 0 {
			continue
		}
		for info, err := range store.List(ctx, d.dir) {
			if err != nil {
				return Listing{}, fmt.Errorf("list %s: %w", strings.TrimSuffix(d.dir, "/"), err)
			}
			if err := d.add(info); err != nil {
				l.Foreign = append(l.Foreign, Foreign{Key: info.Key, Size: info.Size, Why: err.Error()})
			}
		}
	}
	if err := l.readHeads(ctx, heads, unread); err != nil {
		return Listing{}, err
	}
	// A store promises key order; sorting anyway keeps a backend that
	// breaks the promise from reordering a restore's plan.
	slices.SortFunc(l.Snapshots, func(a, b Snapshot) int { return cmp.Compare(a.TXID, b.TXID) })
	slices.SortFunc(l.Segments, func(a, b Segment) int {
		return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
	})
	slices.SortFunc(l.Breaks, func(a, b Break) int { return cmp.Compare(a.TXID, b.TXID) })
	slices.SortFunc(l.Chunks, func(a, b Chunk) int { return strings.Compare(a.Key, b.Key) })
	slices.SortFunc(l.Packs, func(a, b Pack) int { return strings.Compare(a.Key, b.Key) })
	slices.SortFunc(l.Foreign, func(a, b Foreign) int { return strings.Compare(a.Key, b.Key) })
	return l, nil
}

func (l *Listing) addSnapshot(info objstore.Info) error {
	txid, err := ParseManifestKey(info.Key)
	if err == nil {
		l.Snapshots = append(l.Snapshots, Snapshot{Key: info.Key, TXID: txid, Size: info.Size})
	}
	return err
}

func (l *Listing) addSegment(info objstore.Info) error {
	first, last, err := ParseSegmentKey(info.Key)
	if err == nil {
		l.Segments = append(l.Segments, Segment{Key: info.Key, First: first, Last: last, Size: info.Size})
	}
	return err
}

func (l *Listing) addChunk(info objstore.Info) error {
	addr, err := ParseChunkKey(info.Key)
	if err == nil {
		l.Chunks = append(l.Chunks, Chunk{Key: info.Key, Addr: addr, Size: info.Size, Modified: info.Modified})
	}
	return err
}

func (l *Listing) addPack(info objstore.Info) error {
	id, err := ParsePackKey(info.Key)
	if err == nil {
		l.Packs = append(l.Packs, Pack{Key: info.Key, ID: id, Size: info.Size, Modified: info.Modified})
	}
	return err
}

// readHeads completes the listing with the objects under first-only
// change-set keys, reading each one's header, headParallelism at a time.
// Only the replicator's recent change sets have such keys (compaction
// gives the ones it merges ranged keys), so the reads stay few.
//
// An object whose header cannot be read as ferry's, or names another
// first txid than its key, is Foreign: trusted, a header that disagrees
// would put a change set where a restore does not expect it.
func (l *Listing) readHeads(ctx context.Context, heads HeadReader, infos []objstore.Info) error {
	if len(infos) == 0 {
		return nil
	}
	type result struct {
		head Head
		err  error
	}
	results := make([]result, len(infos))
	sem := make(chan struct{}, headParallelism)
	var wg sync.WaitGroup
	for i, info := range infos {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			h, err := heads.ReadHead(ctx, info)
			results[i] = result{h, err}
		})
	}
	wg.Wait()
	for i, info := range infos {
		first, _ := ParseChangeSetKey(info.Key)
		h, err := results[i].head, results[i].err
		switch {
		case objstore.IsNotFound(err):
			// Deleted since it was listed (compaction replaced it, gc
			// collected it): as if listed a moment later.
		case errors.Is(err, objstore.ErrCorrupt), errors.Is(err, objstore.ErrKey):
			// Damaged, or encrypted with a key the reader lacks (the old
			// key of a rotation): either way it holds nothing this
			// reader can use. A reader with no right key at all hears of
			// it from the manifests.
			l.Foreign = append(l.Foreign, Foreign{Key: info.Key, Size: info.Size, Why: err.Error(), Err: err})
		case err != nil:
			return fmt.Errorf("read the header of %s: %w", info.Key, err)
		case h.First != first:
			why := fmt.Sprintf("its header names txid %d, its key txid %d", h.First, first)
			l.Foreign = append(l.Foreign, Foreign{Key: info.Key, Size: info.Size, Why: why,
				Err: fmt.Errorf("%w: %s", objstore.ErrCorrupt, why)})
		case h.Break:
			l.Breaks = append(l.Breaks, Break{Key: info.Key, TXID: first, Size: info.Size})
		case h.Last < h.First:
			why := fmt.Sprintf("its header names the reversed txid range %d-%d", h.First, h.Last)
			l.Foreign = append(l.Foreign, Foreign{Key: info.Key, Size: info.Size, Why: why,
				Err: fmt.Errorf("%w: %s", objstore.ErrCorrupt, why)})
		default:
			l.Segments = append(l.Segments, Segment{Key: info.Key, First: first, Last: h.Last, Size: info.Size})
		}
	}
	return nil
}
