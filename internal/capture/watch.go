package capture

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchLog returns a channel that receives a value soon after the log (or
// the database file) is written. It is a hint that saves the wait for the
// next poll, never the truth: writes to the shared-memory index raise no
// event, and inotify can drop events. When no watcher can be set up the
// channel never fires and polling alone drives the capture.
func watchLog(ctx context.Context, wg *sync.WaitGroup, dbPath string, log *slog.Logger) <-chan struct{} {
	ch := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Info("no file events; polling only", "err", err)
		return ch
	}
	if err := w.Add(filepath.Dir(dbPath)); err != nil {
		w.Close()
		log.Info("no file events; polling only", "err", err)
		return ch
	}
	walPath := dbPath + "-wal"
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Name == walPath || ev.Name == dbPath {
					select {
					case ch <- struct{}{}:
					default:
					}
					// A writer appends to the log many thousand times a
					// second, an event each; the capture reads what they
					// wrote in one pass. Reading the events a little later
					// lets the kernel fold the ones that came meanwhile
					// into one, rather than waking for each.
					time.Sleep(eventDelay)
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return ch
}
