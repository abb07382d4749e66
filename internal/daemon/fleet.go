package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/target"
)

// Tuning of the databases found under dir entries.
const (
	// fleetIdleAfter is how long such a database stays held after its
	// last commit: long enough that a burst of commits does not open and
	// close it over and over, short enough that thousands of quiet ones
	// hold nothing.
	fleetIdleAfter = 10 * time.Second
	// fleetPool bounds the calls in flight on each replica URL of a dir
	// entry, shared by every database found under it.
	fleetPool = 32
	// openers bounds the databases being opened at once at start, when
	// every database that was not idle at the last stop, or is new, is
	// opened to be brought up to date.
	openers = 16
	// statEvery spaces the look at every idle database's log that backs
	// up the file events, which inotify may drop, and that finds the
	// snapshots falling due.
	statEvery = 10 * time.Second
	// fleetPoll is how often an active database of a dir entry looks at
	// its log without an event.
	fleetPoll = time.Second
	// settle is how long a new file under a watched directory is left
	// before it is looked at: an application creating a database writes
	// its header and turns on WAL mode in the moments after.
	settle = 200 * time.Millisecond
)

// dirEntry is one dir entry of the config with the stores its databases
// share.
type dirEntry struct {
	db config.DB
	// ctx ends when the entry is dropped, stopping every database found
	// under it and its control socket.
	ctx    context.Context
	cancel context.CancelFunc
	// shared holds, for each of the entry's replicas, the store every
	// database under it reaches through target.Under.
	shared []objstore.Store
	// skipped holds the files looked at and found not to be a database
	// in WAL mode, so that each is logged once, by path, with the size
	// and time it had then.
	skipped map[string]fileSeen
}

type fileSeen struct {
	size  int64
	mtime time.Time
}

// fleet is every database the daemon replicates, and the one watcher
// that wakes idle ones and finds new ones: idle databases cost no
// goroutine and no descriptor of their own.
type fleet struct {
	d *daemon

	mu      sync.Mutex
	units   map[string]*unit // by database path
	entries []*dirEntry
	// dirs counts, for each directory watched, the dir entries that need
	// it watched.
	dirs    map[string]int
	watcher *fsnotify.Watcher
	// pending holds files under a watched directory to look at once
	// they settle.
	pending map[string]time.Time
}

func newFleet(d *daemon) *fleet {
	f := &fleet{d: d, units: map[string]*unit{}, dirs: map[string]int{}, pending: map[string]time.Time{}}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.o.Log.Warn("no file events; idle databases are looked at every few seconds", "err", err, "every", statEvery)
	} else {
		f.watcher = w
	}
	return f
}

// all returns every unit, by path.
func (f *fleet) all() []*unit {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*unit, 0, len(f.units))
	for _, u := range f.units {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b *unit) int { return cmp.Compare(a.db.Path, b.db.Path) })
	return out
}

func (f *fleet) get(path string) *unit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.units[path]
}

func (f *fleet) add(u *unit) {
	f.mu.Lock()
	f.units[u.db.Path] = u
	f.mu.Unlock()
}

// remove stops u for good and forgets it.
func (f *fleet) remove(u *unit) {
	f.mu.Lock()
	if f.units[u.db.Path] == u {
		delete(f.units, u.db.Path)
	}
	f.mu.Unlock()
	u.halt()
}

// sleep is told that u went idle. Nothing is registered: the watcher and
// the periodic look find it through the fleet's units.
func (f *fleet) sleep(u *unit) {
	// A commit may have landed between the last pass and now, with its
	// event already gone.
	if u.ctx.Err() == nil && u.wakeDue(time.Now()) {
		f.wakeLater(u)
	}
}

// wakeLater wakes u on a goroutine of its own, which ends once the
// Replicator runs: waking opens the database, which the watcher's
// goroutine must not wait for.
func (f *fleet) wakeLater(u *unit) {
	f.d.wg.Add(1)
	go func() {
		defer f.d.wg.Done()
		if _, err := u.wake(); err != nil && u.ctx.Err() == nil {
			f.d.o.Log.Warn("could not open a database of the directory; trying again when it is next written", "db", u.db.Path, "err", err)
		}
	}()
}

// openEntry opens the shared stores of a dir entry and starts every
// database found under it.
func (f *fleet) openEntry(ctx context.Context, db config.DB, o target.Options) (*dirEntry, error) {
	e := &dirEntry{db: db, skipped: map[string]fileSeen{}}
	e.ctx, e.cancel = context.WithCancel(ctx)
	o.Pool = fleetPool
	for _, r := range db.Replicas {
		s, err := target.OpenShared(ctx, r, o)
		if err != nil {
			e.cancel()
			return nil, err
		}
		e.shared = append(e.shared, s)
	}
	if fi, err := os.Stat(db.Dir.Path); err != nil || !fi.IsDir() {
		e.cancel()
		return nil, fmt.Errorf("dir entry %s: no such directory", db.Dir.Path)
	}
	f.mu.Lock()
	f.entries = append(f.entries, e)
	f.mu.Unlock()
	found, err := scanDir(db.Dir, f.watch, func(dir string, err error) {
		f.d.o.Log.Warn("cannot read a directory of a dir entry; skipping it", "dir", dir, "err", err)
	})
	if err != nil {
		f.dropEntry(e)
		return nil, fmt.Errorf("dir entry %s: %w", db.Dir.Path, err)
	}
	var toOpen []*unit
	for _, path := range found {
		u := f.consider(e, path, false)
		if u == nil || (u.startIdle() && !u.wakeDue(time.Now())) {
			continue
		}
		u.mu.Lock()
		u.state = stateStarting
		u.mu.Unlock()
		toOpen = append(toOpen, u)
	}
	f.d.wg.Add(1)
	go func() {
		defer f.d.wg.Done()
		f.openAll(e.ctx, toOpen)
	}()
	return e, nil
}

// openHold is the longest a database opened at start keeps its opener's
// place: one that goes on taking commits stays open, but must not hold
// up the others.
const openHold = 10 * time.Second

// openAll opens the databases that start needs opened (new ones, and ones
// not idle at the last stop), openers at a time, each keeping its place
// until it goes idle, for at most openHold: thousands opened at once
// would each hold connections and descriptors until they settle.
func (f *fleet) openAll(ctx context.Context, units []*unit) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		// Opening thousands of databases leaves the heap far larger than
		// what a settled fleet holds; give that memory back now rather
		// than at the runtime's next forced collection, minutes later.
		if len(units) > 0 {
			debug.FreeOSMemory()
		}
	}()
	slots := make(chan struct{}, openers)
	for _, u := range units {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if _, err := u.wake(); err != nil {
				if u.ctx.Err() == nil {
					f.d.o.Log.Warn("could not open a database of the directory; trying again when it is next written", "db", u.db.Path, "err", err)
				}
				return
			}
			u.mu.Lock()
			ended := u.ended
			u.mu.Unlock()
			select {
			case <-ended:
			case <-time.After(openHold):
			case <-ctx.Done():
			}
		}()
	}
}

// dropEntry stops every database of e and forgets e.
func (f *fleet) dropEntry(e *dirEntry) {
	e.cancel()
	f.mu.Lock()
	f.entries = slices.DeleteFunc(f.entries, func(x *dirEntry) bool { return x == e })
	var units []*unit
	for _, u := range f.units {
		if u.entry == e {
			units = append(units, u)
		}
	}
	f.mu.Unlock()
	for _, u := range units {
		f.remove(u)
	}
}

// consider makes a unit for the file at path under e, if it is a SQLite
// database in WAL mode that nothing replicates yet; a file that is not one
// is logged once and skipped. It returns the new unit, not started.
func (f *fleet) consider(e *dirEntry, path string, fromWatch bool) *unit {
	if e.ctx.Err() != nil {
		return nil
	}
	if f.get(path) != nil {
		return nil // replicated already, by path or by another entry
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	// Only files that no Replicator holds are opened here: closing a
	// descriptor of a database drops every lock the process holds on it.
	seen := fileSeen{size: fi.Size(), mtime: fi.ModTime()}
	if why := walDatabase(path); why != "" {
		if prev, ok := e.skipped[path]; !ok || (prev != seen && !fromWatch) {
			f.d.o.Log.Info("skipping a file that is not a SQLite database in WAL mode", "path", path, "why", why)
		}
		e.skipped[path] = seen
		return nil
	}
	delete(e.skipped, path)
	rel, _ := e.db.Dir.Takes(path)
	db := e.db.Under(rel)
	co := f.d.captureOptions(db)
	co.IdleAfter = cmp.Or(f.d.o.IdleAfter, fleetIdleAfter)
	co.Targets = map[string]objstore.Store{}
	for i, r := range db.Replicas {
		co.Targets[r.Target.String()] = target.Under(e.shared[i], rel, r.Keys, f.d.cfg.Spool)
	}
	u := f.d.newUnit(e.ctx, db, co, e)
	u.events = make(chan struct{}, 1)
	u.co.Events = u.events
	if f.watcher != nil && u.co.PollInterval == 0 {
		// The fleet's events wake the Replicator at each commit; its
		// polls only back up an event inotify dropped, and at the
		// default pace a hundred busy databases would spend a core
		// looking at logs that did not change.
		u.co.PollInterval = fleetPoll
	}
	f.mu.Lock()
	if f.units[path] != nil {
		f.mu.Unlock()
		u.stop()
		return nil
	}
	f.units[path] = u
	f.mu.Unlock()
	if fromWatch {
		f.d.o.Log.Info("replicating a new database of the directory", "db", path)
	}
	return u
}

// scanDir returns the files under d that its pattern takes, calling
// visit for each directory it looks in and unreadable for each it cannot.
func scanDir(d *config.Dir, visit func(dir string), unreadable func(dir string, err error)) ([]string, error) {
	var found []string
	err := filepath.WalkDir(d.Path, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if path == d.Path {
				return err
			}
			unreadable(path, err)
			return nil
		}
		if de.IsDir() {
			if path != d.Path && (!d.Recursive || strings.HasPrefix(de.Name(), ".")) {
				return filepath.SkipDir
			}
			visit(path)
			return nil
		}
		if _, ok := d.Takes(path); ok && de.Type().IsRegular() {
			found = append(found, path)
		}
		return nil
	})
	return found, err
}

// Skipped is a file a dir entry's pattern takes that is not a SQLite
// database in WAL mode.
type Skipped struct {
	Path string `json:"path"`
	Why  string `json:"why"`
}

// Databases returns every database cfg replicates, as the daemon would
// find them now: the ones listed by path, then those found under each dir
// entry with their replicas joined, in path order, and the files a dir
// entry skips. It opens only the files under dir entries, to read their
// headers; call it from a process that holds no database open, since
// closing a descriptor drops that process's locks on the file.
func Databases(cfg *config.Config) ([]config.DB, []Skipped, error) {
	var dbs []config.DB
	var skipped []Skipped
	seen := map[string]bool{}
	for _, db := range cfg.DBs {
		if db.Dir == nil {
			dbs = append(dbs, db)
			seen[db.Path] = true
		}
	}
	for _, db := range cfg.DBs {
		if db.Dir == nil {
			continue
		}
		var unreadable error
		found, err := scanDir(db.Dir, func(string) {}, func(dir string, err error) { unreadable = err })
		if err == nil {
			err = unreadable
		}
		if err != nil {
			return nil, nil, fmt.Errorf("dir entry %s: %w", db.Dir.Path, err)
		}
		for _, path := range found {
			if seen[path] {
				continue
			}
			if why := walDatabase(path); why != "" {
				skipped = append(skipped, Skipped{Path: path, Why: why})
				continue
			}
			seen[path] = true
			rel, _ := db.Dir.Takes(path)
			dbs = append(dbs, db.Under(rel))
		}
	}
	return dbs, skipped, nil
}

// walDatabase says why the file at path is not a SQLite database in WAL
// mode, from its header, or "" when it is one.
func walDatabase(path string) string {
	fh, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer fh.Close()
	var hdr [100]byte
	if _, err := io.ReadFull(fh, hdr[:]); err != nil {
		return "shorter than a SQLite header"
	}
	if string(hdr[:16]) != "SQLite format 3\x00" {
		return "not a SQLite database"
	}
	// The file format's write and read versions are 2 in WAL mode.
	if hdr[18] != 2 || hdr[19] != 2 {
		return "not in WAL mode"
	}
	return ""
}

// watch adds dir to the directories watched.
func (f *fleet) watch(dir string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirs[dir]++
	if f.dirs[dir] == 1 && f.watcher != nil {
		if err := f.watcher.Add(dir); err != nil {
			f.d.o.Log.Warn("cannot watch a directory; its idle databases are looked at every few seconds", "dir", dir, "err", err)
		}
	}
}

// loop answers file events and looks at every idle database every
// statEvery, until ctx ends.
func (f *fleet) loop(ctx context.Context) {
	var events chan fsnotify.Event
	var errs chan error
	if f.watcher != nil {
		events, errs = f.watcher.Events, f.watcher.Errors
		defer f.watcher.Close()
	}
	tick := time.NewTicker(statEvery)
	defer tick.Stop()
	settleTick := time.NewTicker(settle)
	defer settleTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			f.event(ev)
		case err := <-errs:
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				f.d.o.Log.Warn("file events were dropped; looking at every idle database")
				f.look(ctx, time.Now())
			}
		case now := <-tick.C:
			f.look(ctx, now)
		case now := <-settleTick.C:
			f.settled(now)
		}
	}
}

// event answers one file event: a write to the log of an idle database
// wakes it; under a watched entry, a file that appears is looked at once
// it settles, and a database that vanishes stops.
func (f *fleet) event(ev fsnotify.Event) {
	name := ev.Name
	if db, ok := strings.CutSuffix(name, "-wal"); ok {
		if u := f.get(db); u != nil {
			if !ev.Has(fsnotify.Write) {
				return
			}
			u.lastEvent.Store(time.Now().UnixNano())
			if u.State() != stateActive {
				f.wakeLater(u)
			} else if u.events != nil {
				select {
				case u.events <- struct{}{}:
				default:
				}
			}
			return
		}
		name = db // a new database's log: look at the database
	}
	if ev.Has(fsnotify.Create) && !strings.HasPrefix(filepath.Base(name), ".") {
		if fi, err := os.Stat(name); err == nil && fi.IsDir() {
			if e := f.entryHolding(name); e != nil && e.db.Dir.Watch && e.db.Dir.Recursive {
				f.watch(name)
				f.scanNew(e, name)
			}
			return
		}
	}
	e := f.entryFor(name)
	if e == nil || !e.db.Dir.Watch {
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if u := f.get(name); u != nil && u.entry == e {
			if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
				f.d.o.Log.Info("a database of the directory is gone; no longer replicating it", "db", name)
				// Stopping ships what was captured, which may wait on a
				// store: not on the goroutine that wakes every other.
				f.d.wg.Add(1)
				go func() {
					defer f.d.wg.Done()
					f.remove(u)
				}()
			}
		}
		return
	}
	if f.get(name) == nil {
		f.mu.Lock()
		f.pending[name] = time.Now().Add(settle)
		f.mu.Unlock()
	}
}

// scanNew looks at the files of a directory that appeared under e.
func (f *fleet) scanNew(e *dirEntry, dir string) {
	filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if de.IsDir() && path != dir {
			if strings.HasPrefix(de.Name(), ".") {
				return filepath.SkipDir
			}
			f.watch(path)
			return nil
		}
		if _, ok := e.db.Dir.Takes(path); ok {
			f.mu.Lock()
			f.pending[path] = time.Now().Add(settle)
			f.mu.Unlock()
		}
		return nil
	})
}

// settled looks at the pending files that have settled.
func (f *fleet) settled(now time.Time) {
	f.mu.Lock()
	var ready []string
	for path, at := range f.pending {
		if !now.Before(at) {
			ready = append(ready, path)
			delete(f.pending, path)
		}
	}
	f.mu.Unlock()
	for _, path := range ready {
		e := f.entryFor(path)
		if e == nil {
			continue
		}
		if u := f.consider(e, path, true); u != nil {
			f.wakeLater(u)
		}
	}
}

// entryHolding returns the dir entry whose directory holds dir, a
// directory under it that is not hidden, or nil.
func (f *fleet) entryHolding(dir string) *dirEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		rel, err := filepath.Rel(e.db.Dir.Path, dir)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		hidden := false
		for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
			hidden = hidden || strings.HasPrefix(part, ".")
		}
		if !hidden {
			return e
		}
	}
	return nil
}

// entryFor returns the watched-or-not dir entry that takes path.
func (f *fleet) entryFor(path string) *dirEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		if _, ok := e.db.Dir.Takes(path); ok {
			return e
		}
	}
	return nil
}

// look wakes every idle database whose log changed or whose snapshot
// fell due: the backstop for events inotify dropped or never sends.
func (f *fleet) look(ctx context.Context, now time.Time) {
	for _, u := range f.all() {
		if ctx.Err() != nil {
			return
		}
		if u.entry != nil && u.wakeDue(now) {
			f.wakeLater(u)
		}
	}
}

// idleCount returns how many databases are idle, for the log.
func (f *fleet) idleCount() int {
	n := 0
	for _, u := range f.all() {
		if u.State() == stateIdle {
			n++
		}
	}
	return n
}
