package daemon

import (
	"context"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/inbox"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/uploader"
)

// startFiles opens the files spool and starts its uploader, the adoption of
// pushed files, the inbox watchers and the spool monitor.
func (d *daemon) startFiles(ctx context.Context, stores map[string]objstore.Store) error {
	o := d.o
	sp, err := spool.Open(o.FilesSpool, spool.Options{Backoff: o.SpoolBackoff})
	if err != nil {
		return err
	}
	d.files = sp
	failed, err := sp.Failed()
	if err != nil {
		sp.Close()
		return err
	}
	if len(failed) > 0 {
		o.Log.Warn("files refused for good by their target wait in the spool; once the cause is put right, 'ferry spool retry' sends them again",
			"spool", o.FilesSpool, "uploads", len(failed), "first_reason", failed[0].Reason)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		<-ctx.Done()
		sp.Close()
	}()
	o.Registry.MustRegister(sp.Collector())

	up := uploader.New(sp, func(ctx context.Context, url string) (objstore.Store, error) {
		if s, ok := stores[url]; ok {
			return s, nil
		}
		// A file pushed to a replica the config does not name ships with
		// the standard credential chain.
		return target.OpenURL(ctx, url, o.Target)
	}, uploader.Options{Log: o.Log, DoneDelay: uploader.FilesDoneDelay})
	d.filesUploads = up
	d.run(ctx, up.Run)
	d.run(ctx, func(ctx context.Context) error { return adoptLoop(ctx, sp, o.Log) })
	for _, in := range d.cfg.Files {
		url := in.Replica.Target.String()
		w := inbox.New(in.Path, func(files []inbox.File) (int, error) {
			return takeInboxFiles(sp, url, files)
		}, inbox.Options{Log: o.Log})
		d.inboxes = append(d.inboxes, watchedInbox{path: in.Path, w: w})
		d.run(ctx, w.Run)
	}
	mon := spool.NewMonitor(o.FilesSpool, spool.Limits{}, time.Minute, 3, o.Log, o.Registry)
	d.run(ctx, func(ctx context.Context) error { mon.Run(ctx); return nil })
	return nil
}

// filesDrained reports whether every file handed to the daemon is in its
// targets: the files spool holds nothing waiting (failed entries wait for
// an operator, not for a retry) and no inbox holds a file.
func (d *daemon) filesDrained() bool {
	if d.files == nil {
		return true
	}
	if d.files.Len(uploader.FilesQueue) > 0 {
		return false
	}
	for _, in := range d.cfg.Files {
		waiting := false
		err := filepath.WalkDir(in.Path, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() && !inbox.Ignored(e.Name()) {
				waiting = true
				return filepath.SkipAll
			}
			return nil
		})
		if err != nil || waiting {
			return false
		}
	}
	return true
}

// adoptLoop takes in, every second, the files that `ferry push` handed to
// this daemon's spool, and carries out the retries of refused files that
// `ferry spool retry` asked for.
func adoptLoop(ctx context.Context, sp *spool.Spool, log *slog.Logger) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := sp.Adopt(); err != nil {
				log.Warn("adopting pushed files failed; retrying", "err", err)
			} else if n > 0 {
				log.Debug("adopted pushed files", "count", n)
			}
			if n, err := sp.TakeRetryRequests(); err != nil {
				log.Warn("sending refused files back, as asked, failed; retrying", "err", err)
			} else if n > 0 {
				log.Info("files refused for good sent back to be uploaded again, as asked", "uploads", n)
			}
		}
	}
}
