package daemon

import (
	"errors"
	"fmt"
	"os"

	"github.com/ferrydb/ferry/internal/inbox"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// takeInboxFiles moves files, in order, out of an inbox into the spool,
// for url, and returns how many it took. Files of up to
// uploader.BundleFileMax are copied into bundles (uploader.Bundle), whose
// spool entries are made durable together (spool.Batch) before the files
// leave the inbox: a spool entry per small file would cost more than
// shipping it. A larger file moves in alone, by hard link where it can
// (uploader.EnqueueFile). A crash after a bundle is durable and before
// its files are removed leaves them to be spooled again: shipped twice,
// never lost.
func takeInboxFiles(sp *spool.Spool, url string, files []inbox.File) (int, error) {
	targets := []string{url}
	taken := 0
	var (
		bun    uploader.Bundle
		bunned []inbox.File // the files in bun, not yet removed
	)
	// commit makes the bundle durable and removes its files from the
	// inbox.
	commit := func() error {
		if bun.Len() == 0 {
			return nil
		}
		b, err := sp.NewBatch(uploader.FilesQueue)
		if err != nil {
			return err
		}
		job, data := bun.Job(targets, false)
		if err := b.AddBytes(job, data); err != nil {
			b.Discard()
			return err
		}
		if _, err := b.Commit(); err != nil {
			return err
		}
		for _, f := range bunned {
			if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				// Spooled already: the next scan spools it again.
				return fmt.Errorf("remove %s from the inbox after spooling it: %w", f.Path, err)
			}
			taken++
		}
		bunned = nil
		return nil
	}
	for _, f := range files {
		if bun.Size() > uploader.MaxBundleBytes-uploader.BundleFileMax {
			if err := commit(); err != nil {
				return taken, err
			}
		}
		_, err := bun.Add(f.Path, f.Key)
		if err == nil {
			bunned = append(bunned, f)
			continue
		}
		// A file the bundle cannot take goes alone, after the files
		// before it, so that those taken stay the first ones.
		if err := commit(); err != nil {
			return taken, err
		}
		if !errors.Is(err, uploader.ErrTooLarge) {
			return taken, err
		}
		if _, err := uploader.EnqueueFile(sp, f.Path, f.Key, targets, true); err != nil {
			return taken, err
		}
		taken++
	}
	return taken, commit()
}
