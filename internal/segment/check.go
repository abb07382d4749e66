package segment

import (
	"context"
	"io"
	"os"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Check downloads the change set at key into a temporary file and
// verifies it end to end, for verify -deep and the scrub: a change set is
// read whole before anything is believed of it.
func Check(ctx context.Context, store objstore.Store, key string) error {
	rc, _, err := store.Get(ctx, key, nil)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "ferry-check-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, rc); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err = Verify(f, Options{Key: key})
	return err
}
