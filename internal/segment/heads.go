package segment

import (
	"context"
	"fmt"
	"io"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
)

// Heads returns the layout.HeadReader that listings of store use: it
// reads the first 40 bytes of an object under a first-only change-set key
// with one ranged GET.
func Heads(store objstore.Store) layout.HeadReader { return heads{store} }

type heads struct{ store objstore.Store }

func (h heads) ReadHead(ctx context.Context, info objstore.Info) (layout.Head, error) {
	if info.Size < headerSize {
		// Not worth a request, and a ranged GET of an empty object is
		// an error of its own on S3.
		return layout.Head{}, &CorruptError{Key: info.Key, Reason: fmt.Sprintf("%d bytes, shorter than a header", info.Size)}
	}
	// The listing said it is long enough: a short read is a transfer cut
	// off, to retry, not damage.
	return readHead(ctx, h.store, info.Key, false)
}

// ReadHead says what the object at key, a first-only change-set key,
// holds (a change set and its txids, or a break marker) from its first
// bytes, with one ranged GET. A follower asks it of the key the next
// change set must have. A missing object matches objstore.ErrNotFound;
// one too short to hold a header is damage.
func ReadHead(ctx context.Context, store objstore.Store, key string) (layout.Head, error) {
	return readHead(ctx, store, key, true)
}

func readHead(ctx context.Context, store objstore.Store, key string, shortIsDamage bool) (layout.Head, error) {
	rc, _, err := store.Get(ctx, key, &objstore.Range{Offset: 0, Length: headerSize})
	if err != nil {
		return layout.Head{}, err
	}
	defer rc.Close()
	b := make([]byte, headerSize)
	n, err := io.ReadFull(rc, b)
	switch {
	case err == nil:
		return ParseHead(b, key)
	case shortIsDamage && (err == io.EOF || err == io.ErrUnexpectedEOF):
		return layout.Head{}, &CorruptError{Key: key, Reason: fmt.Sprintf("%d bytes, shorter than a header", n)}
	default:
		return layout.Head{}, fmt.Errorf("read the header of %s: %w", key, err)
	}
}
