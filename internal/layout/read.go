package layout

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Lister is what Read needs of a store.
type Lister interface {
	List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error]
}

// Kind selects the directories Read lists. Chunks outnumber everything
// else by far, so a caller that needs no chunks does not pay for them.
type Kind uint8

// The kinds of object a replica holds.
const (
	Snapshots Kind = 1 << iota
	Segments
	Chunks

	All = Snapshots | Segments | Chunks
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

// Foreign is an object in one of the replica's directories whose key names
// nothing of ferry's.
type Foreign struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	Why  string `json:"why"`
}

// Listing is what a replica holds, by key alone: nothing in it has been
// read. Each list is in key order, which is txid order for snapshots
// and segments (segments by first txid, then last).
type Listing struct {
	Snapshots []Snapshot
	Segments  []Segment
	Chunks    []Chunk
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
	return n
}

// Read lists the directories that kinds selects, one LIST each (paged
// underneath), and parses every key. See the package documentation for
// who may call it, and when.
//
// Manifests are listed before chunks: a manifest is written only once
// every chunk it names is stored, so any chunk a listed manifest names is
// in the chunk listing that follows, even while a snapshot is being
// written. Listed the other way round, a snapshot finished in between
// would seem to lack its chunks.
func Read(ctx context.Context, store Lister, kinds Kind) (Listing, error) {
	var l Listing
	for _, d := range []struct {
		kind Kind
		dir  string
		add  func(objstore.Info) error
	}{
		{Snapshots, snapshotsDir, l.addSnapshot},
		{Segments, segmentsDir, l.addSegment},
		{Chunks, chunksDir, l.addChunk},
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
	// A store promises key order; sorting anyway keeps a backend that
	// breaks the promise from reordering a restore's plan.
	slices.SortFunc(l.Snapshots, func(a, b Snapshot) int { return cmp.Compare(a.TXID, b.TXID) })
	slices.SortFunc(l.Segments, func(a, b Segment) int {
		return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
	})
	slices.SortFunc(l.Chunks, func(a, b Chunk) int { return strings.Compare(a.Key, b.Key) })
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
