package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
)

// ManifestInfo is what List says about one snapshot.
type ManifestInfo struct {
	Key       string    `json:"key"`
	TXID      uint64    `json:"txid"`
	Time      time.Time `json:"time"`
	PageSize  int       `json:"page_size"`
	PageCount uint32    `json:"page_count"`
	Size      int64     `json:"size"` // database bytes
	// AddressKey is the manifest's: which key named its chunks.
	AddressKey uint32 `json:"-"`
	// Err is set when the manifest's header cannot be read or fails its
	// checks; only Key and TXID are then filled in. One damaged manifest
	// does not hide the others.
	Err error `json:"-"`
}

// List returns every snapshot in the store, oldest txid first, from each
// manifest's checksummed header (one ranged read per manifest). Objects
// under snapshots/ whose keys are not manifest keys are skipped.
func List(ctx context.Context, store objstore.Store) ([]ManifestInfo, error) {
	l, err := layout.Read(ctx, store, layout.Snapshots, nil)
	if err != nil {
		return nil, err
	}
	return Describe(ctx, store, l.Snapshots)
}

// Describe reads the header of each listed manifest, in the order given.
// A manifest whose header cannot be read or fails its checks is described
// by its Err; only a cancelled ctx fails the whole call.
func Describe(ctx context.Context, store objstore.Store, snaps []layout.Snapshot) ([]ManifestInfo, error) {
	var out []ManifestInfo
	for _, s := range snaps {
		mi := ManifestInfo{Key: s.Key, TXID: s.TXID}
		m, err := readHeader(ctx, store, s.Key)
		if err == nil && m.TXID != s.TXID {
			err = &ManifestError{Key: s.Key, Reason: fmt.Sprintf("names txid %d, its key txid %d", m.TXID, s.TXID)}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("list snapshots: %w", err)
			}
			mi.Err = err
		} else {
			mi.Time, mi.PageSize, mi.PageCount, mi.Size, mi.AddressKey = m.Time, m.PageSize, m.PageCount, m.Size(), m.AddressKey
		}
		out = append(out, mi)
	}
	// A manifest that no key given opens is unusable like a damaged one,
	// for a reader that has the newer keys of a rotation but not the
	// older; when no manifest opens, the reader has the wrong key or none,
	// and must hear that rather than of damage.
	keyErrs := 0
	for _, mi := range out {
		if errors.Is(mi.Err, objstore.ErrKey) {
			keyErrs++
		}
	}
	if keyErrs > 0 && keyErrs == len(out) {
		return nil, out[len(out)-1].Err
	}
	return out, nil
}

func readHeader(ctx context.Context, store objstore.Store, key string) (Manifest, error) {
	rc, _, err := store.Get(ctx, key, &objstore.Range{Offset: 0, Length: manifestHeaderSize})
	if err != nil {
		return Manifest{}, fmt.Errorf("read snapshot manifest: %w", err)
	}
	defer rc.Close()
	var b [manifestHeaderSize]byte
	n, err := io.ReadFull(rc, b[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && err != io.EOF {
		return Manifest{}, fmt.Errorf("read snapshot manifest %s: %w", key, err)
	}
	m, _, err := parseManifestHeader(b[:n], key)
	return m, err
}

// Load reads, checks and returns the manifest of the snapshot at txid.
func Load(ctx context.Context, store objstore.Store, txid uint64) (Manifest, error) {
	key := ManifestKey(txid)
	data, err := readManifest(ctx, store, key)
	if err != nil {
		return Manifest{}, err
	}
	m, err := parseManifest(data, key)
	if err != nil {
		return Manifest{}, err
	}
	if m.TXID != txid {
		return Manifest{}, &ManifestError{Key: key, Reason: fmt.Sprintf("names txid %d, its key txid %d", m.TXID, txid)}
	}
	return m, nil
}

// readManifest reads a whole manifest object, refusing one larger than
// MaxManifestSize before and while reading it.
func readManifest(ctx context.Context, store objstore.Store, key string) ([]byte, error) {
	rc, info, err := store.Get(ctx, key, nil)
	if err != nil {
		return nil, fmt.Errorf("load snapshot manifest %s: %w", key, err)
	}
	defer rc.Close()
	if info.Size > MaxManifestSize {
		return nil, &ManifestError{Key: key, Reason: fmt.Sprintf("%d bytes, more than the %d a manifest may have", info.Size, MaxManifestSize)}
	}
	data, err := io.ReadAll(io.LimitReader(rc, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("load snapshot manifest %s: %w", key, err)
	}
	if len(data) > MaxManifestSize {
		return nil, &ManifestError{Key: key, Reason: fmt.Sprintf("more than the %d bytes a manifest may have", MaxManifestSize)}
	}
	return data, nil
}
