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
	rc, _, err := h.store.Get(ctx, info.Key, &objstore.Range{Offset: 0, Length: headerSize})
	if err != nil {
		return layout.Head{}, err
	}
	defer rc.Close()
	b := make([]byte, headerSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		// The listing said it is long enough: a short read is a
		// transfer cut off, to retry, not damage.
		return layout.Head{}, fmt.Errorf("read the header of %s: %w", info.Key, err)
	}
	return ParseHead(b, info.Key)
}
