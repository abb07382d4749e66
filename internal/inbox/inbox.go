// Package inbox watches a directory that applications drop files into and
// hands each file to the spool once it is complete, at which point it
// leaves the inbox. A file is complete when it was renamed into the inbox
// or one of its directories, alone or in a directory (on Linux, where
// inotify says so), or when it has stayed unchanged for a quiet period: a
// writer that closes a file and walks away.
//
// fsnotify events only hint that something changed; a periodic scan is the
// truth, because events can be dropped (queue overflow, a directory created
// and filled before its watch was added) and some file systems raise none.
package inbox

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ferrydb/ferry/internal/failrun"
)

// File is a complete file of the inbox: where it lies, and its
// slash-separated path relative to the inbox.
type File struct {
	Path string
	Key  string
}

// Handler takes complete files out of the inbox, up to handBatch at a
// time, so that it can make many durable at once. It returns how many of
// them, from the first, it took: each of those must be gone from its
// path. The others stay, and are offered again on a later scan; err says
// why the first of them was not taken.
type Handler func(files []File) (taken int, err error)

// handBatch is the most files a scan hands over in one call.
const handBatch = 256

// Options configure a Watcher.
type Options struct {
	// Quiet is how long a file must stay unchanged to count as complete;
	// zero means one second.
	Quiet time.Duration
	// Poll is the interval of the scans that back up fsnotify; zero means
	// one second.
	Poll time.Duration
	Log  *slog.Logger

	// Now is the clock quiet periods are measured on; nil means time.Now.
	// A test sets it to decide when a file has been quiet long enough,
	// whatever the scheduler does to the test's goroutines.
	Now func() time.Time
	// AfterScan, when set, is called after every scan. It is a hook for
	// tests: they wait for the watcher to have looked at the inbox rather
	// than sleep for as long as a scan might take.
	AfterScan func()
}

// Watcher watches one inbox directory.
type Watcher struct {
	dir    string
	handle Handler
	o      Options
	seen   map[string]sighting
	// moved holds the paths renamed into the inbox since the last scan:
	// files, or directories whose files all came with them, complete
	// without a quiet period.
	moved map[string]bool
	// scans and handoffs follow runs of failed scans and of files the
	// handler did not take, for the log and Failing.
	scans, handoffs failrun.Run
	// moves reports renames into the inbox's directories; nil where
	// there are no such events. Set by Run.
	moves *moveWatch
}

// sighting is what a scan last saw of a file and since when it has looked
// that way.
type sighting struct {
	size  int64
	mtime time.Time
	since time.Time
}

// New returns a watcher of dir that passes complete files to handle.
func New(dir string, handle Handler, o Options) *Watcher {
	if o.Quiet <= 0 {
		o.Quiet = time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Watcher{dir: dir, handle: handle, o: o, seen: map[string]sighting{}, moved: map[string]bool{}}
}

// Run watches until ctx ends. It fails at once if the inbox cannot be read.
func (w *Watcher) Run(ctx context.Context) error {
	if fi, err := os.Stat(w.dir); err != nil {
		return fmt.Errorf("inbox %s: %w", w.dir, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("inbox %s is not a directory", w.dir)
	}
	events, closeWatch := w.watch()
	defer closeWatch()
	var moves <-chan string
	if mw, err := watchMoves(w.dir); err != nil {
		w.o.Log.Debug("inbox: no rename events; files renamed in wait for their quiet period", "inbox", w.dir, "err", err)
	} else {
		defer mw.Close()
		w.moves, moves = mw, mw.Names()
	}
	poll := time.NewTicker(w.o.Poll)
	defer poll.Stop()
	// A hint schedules a scan a little later, so that a burst of events
	// costs one scan and a renamed-in file's quiet period starts counting.
	var soon <-chan time.Time
	for {
		w.scan(w.o.Now())
		if w.o.AfterScan != nil {
			w.o.AfterScan()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		case <-soon:
			soon = nil
		case _, ok := <-events:
			if !ok {
				events = nil
			} else if soon == nil {
				soon = time.After(50 * time.Millisecond)
			}
		case path, ok := <-moves:
			if !ok {
				moves = nil
				break
			}
			w.moved[path] = true
			if soon == nil {
				soon = time.After(50 * time.Millisecond)
			}
		}
	}
}

// watch starts fsnotify on the inbox; without it the scans alone do the
// job, only later.
func (w *Watcher) watch() (<-chan fsnotify.Event, func()) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.o.Log.Warn("inbox: no file events, scanning only", "inbox", w.dir, "err", err)
		return nil, func() {}
	}
	if err := fw.Add(w.dir); err != nil {
		w.o.Log.Warn("inbox: no file events, scanning only", "inbox", w.dir, "err", err)
	}
	go func() {
		for err := range fw.Errors {
			w.o.Log.Debug("inbox: file event error; the next scan covers it", "inbox", w.dir, "err", err)
		}
	}()
	return fw.Events, func() { fw.Close() }
}

// scan walks the inbox once and hands over every file that has been quiet
// long enough.
func (w *Watcher) scan(now time.Time) {
	present := map[string]bool{}
	var complete []File
	err := filepath.WalkDir(w.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == w.dir {
				return err
			}
			return nil // vanished while walking: the next scan sees the truth
		}
		if path != w.dir && Ignored(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() && w.moves != nil {
			w.moves.watch(path)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		present[path] = true
		// A file renamed in is whole on arrival: no quiet period to
		// wait for.
		if !w.renamedIn(path) {
			prev, ok := w.seen[path]
			if !ok || prev.size != fi.Size() || !prev.mtime.Equal(fi.ModTime()) {
				w.seen[path] = sighting{size: fi.Size(), mtime: fi.ModTime(), since: now}
				return nil
			}
			if now.Sub(prev.since) < w.o.Quiet {
				return nil
			}
		}
		rel, err := filepath.Rel(w.dir, path)
		if err != nil {
			return nil
		}
		complete = append(complete, File{Path: path, Key: filepath.ToSlash(rel)})
		return nil
	})
	if err != nil {
		clear(w.moved)
		w.scanFailed(now, err)
		return
	}
	if failed, since := w.scans.Succeed(); failed > 0 {
		w.o.Log.Info("inbox: readable again", "inbox", w.dir, "failing_for", now.Sub(since).Round(time.Millisecond))
	}
	// What came by rename is handed over now, or, if the handoff fails,
	// left to the quiet period like any file.
	clear(w.moved)
	for len(complete) > 0 {
		batch := complete[:min(len(complete), handBatch)]
		complete = complete[len(batch):]
		taken, err := w.handle(batch)
		for _, f := range batch[:taken] {
			delete(w.seen, f.Path)
			delete(present, f.Path)
		}
		if err != nil {
			// What stopped this file likely stops the rest (a full
			// spool): they wait for the next scan.
			w.handoffFailed(now, batch[taken].Path, len(batch)-taken+len(complete), err)
			break
		}
		if failed, since := w.handoffs.Succeed(); failed > 0 {
			w.o.Log.Info("inbox: files handed over again", "inbox", w.dir, "failing_for", now.Sub(since).Round(time.Millisecond))
		}
	}
	for path := range w.seen {
		if !present[path] {
			delete(w.seen, path)
		}
	}
}

// scanFailed logs a scan that could not read the inbox: the first of a
// run at WARN, a reminder now and then, the others at DEBUG.
func (w *Watcher) scanFailed(now time.Time, err error) {
	switch news, failed, since := w.scans.Fail(now, err); news {
	case failrun.Began:
		w.o.Log.Warn("inbox: cannot read it; files dropped into it wait until it can be read", "inbox", w.dir, "err", err)
	case failrun.Reminder:
		w.o.Log.Warn("inbox: still cannot read it", "inbox", w.dir, "since", since.Format(time.RFC3339), "scans", failed, "err", err)
	default:
		w.o.Log.Debug("inbox: scan failed", "inbox", w.dir, "err", err)
	}
}

// handoffFailed logs a file the handler did not take, with left files
// waiting behind it, as scanFailed logs scans.
func (w *Watcher) handoffFailed(now time.Time, file string, left int, err error) {
	switch news, failed, since := w.handoffs.Fail(now, err); news {
	case failrun.Began:
		w.o.Log.Warn("inbox: file stays in the inbox for a later try", "file", file, "left", left, "err", err)
	case failrun.Reminder:
		w.o.Log.Warn("inbox: files still cannot be handed over", "inbox", w.dir, "since", since.Format(time.RFC3339), "tries", failed, "left", left, "err", err)
	default:
		w.o.Log.Debug("inbox: file stays in the inbox for a later try", "file", file, "left", left, "err", err)
	}
}

// Failing returns since when the inbox cannot be read, or its files
// cannot be handed over, and why; a zero time when it works. A health
// check turns red on it.
func (w *Watcher) Failing() (since time.Time, err error) {
	if since, err := w.scans.Failing(); !since.IsZero() {
		return since, fmt.Errorf("cannot read the inbox: %w", err)
	}
	if since, err := w.handoffs.Failing(); !since.IsZero() {
		return since, fmt.Errorf("cannot hand its files over: %w", err)
	}
	return time.Time{}, nil
}

// renamedIn reports whether the file at path was renamed into the inbox,
// alone or in a directory, since the last scan.
func (w *Watcher) renamedIn(path string) bool {
	for p := path; len(p) > len(w.dir); p = filepath.Dir(p) {
		if w.moved[p] {
			return true
		}
	}
	return false
}

// Ignored reports names that by convention are still being written: hidden
// files and the temporary names editors and downloaders use before they
// rename a file into place.
func Ignored(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") ||
		strings.HasSuffix(name, ".part") || strings.HasSuffix(name, "~")
}
