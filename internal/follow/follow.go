package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrydb/ferry/internal/compact"
	"github.com/ferrydb/ferry/internal/durable"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// Options tune a Follower.
type Options struct {
	// Replica names the replica in status, logs and the follower's
	// record: a database that followed another replica is restored anew.
	Replica string
	// Interval is how often the replica is polled once caught up; zero
	// means 1s.
	Interval time.Duration
	// HealthzMaxLag is the lag, or time failing, past which /healthz
	// answers 503; zero means 5m.
	HealthzMaxLag time.Duration
	// Log receives what the follower has to say; nil discards it.
	Log *slog.Logger
	// Keys check the chunk addresses of an encrypted replica's snapshots
	// when the follower restores; nil for a replica without encryption.
	// The store itself decrypts.
	Keys snapshot.Keys
	// Finish, when it closes, makes Run apply everything the replica
	// holds, hand the database over (see Run) and return: a standby
	// that took the primary's lease and is about to become the primary.
	Finish <-chan struct{}
}

// Follower keeps the database at one path up to date from one replica.
type Follower struct {
	store objstore.Store
	path  string
	o     Options
	log   *slog.Logger

	// mustList makes the next poll list the replica rather than ask for
	// the next change set's key (see poll); set at the start, after a
	// failure and when finishing.
	mustList bool
	// unchained is set while the follower does not know that the change
	// set holding its next txid will be named by that txid: after a
	// restore to a snapshot's txid, that change set may straddle it (the
	// replicator's open batch held the snapshot's txid and went on past
	// it), be named by an earlier txid, and reach the store after the
	// snapshot. Only a listing finds it. While unchained, the follower
	// lists at chainListAt, backing off from one interval to checkEvery
	// by doubling chainListWait, and is chained again once it applies a
	// change set or a listing shows one ending at its txid.
	unchained     bool
	chainListAt   time.Time
	chainListWait time.Duration
	// checkEvery is how often an idle follower looks for a snapshot
	// newer than what it holds (see poll); checked is when it last did.
	checkEvery time.Duration
	checked    time.Time

	db    *db // nil until the first state is in place
	marks markFile
	// restoreFailed is when the last restore anew failed: a replica
	// damaged past what a restore gets around would otherwise cost a
	// snapshot's download at every poll.
	restoreFailed time.Time
	restoreRetry  time.Duration // how long after one fails the next is tried

	mu sync.Mutex
	st state

	reg     *prometheus.Registry
	metrics *metrics
}

// New returns a Follower of the replica in store into the database at
// dbPath. Run starts it.
func New(store objstore.Store, dbPath string, o Options) *Follower {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.HealthzMaxLag <= 0 {
		o.HealthzMaxLag = 5 * time.Minute
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Follower{store: store, path: dbPath, o: o, log: log, mustList: true, unchained: true, checkEvery: snapshotCheckEvery, reg: prometheus.NewRegistry(), marks: markFile{dbPath: dbPath}, restoreRetry: time.Minute}
	f.metrics = newMetrics(f.reg, f)
	return f
}

// Run follows the replica in store into the database at dbPath until ctx
// ends; see New.
func Run(ctx context.Context, store objstore.Store, dbPath string, o Options) error {
	return New(store, dbPath, o).Run(ctx)
}

// Run puts the newest state of the replica in place (or continues from
// the state the database holds), then applies each new transaction as it
// appears, until ctx ends. It returns nil when ctx ends, and an error
// only when it cannot start: a replica that holds nothing to restore, a
// database it cannot write.
func (f *Follower) Run(ctx context.Context) error {
	l, err := lock(f.path)
	if err != nil {
		return err
	}
	defer f.marks.close()
	if err := durable.RemoveLeftBehind(f.path, segmentInfix); err != nil {
		l.release(false)
		return err
	}
	if err := f.start(ctx); err != nil {
		// A start that put no database in place leaves nothing behind.
		_, serr := os.Stat(f.path)
		l.release(errors.Is(serr, os.ErrNotExist))
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		f.db.close()
		f.db = nil
		l.release(false)
	}()
	f.log.Info("ferry is following", "replica", f.o.Replica, "db", f.path, "txid", f.applied().TXID)
	var gapSeen bool
	for {
		more, err := f.poll(ctx, &gapSeen)
		if ctx.Err() != nil {
			return nil
		}
		f.noteError(err)
		if more && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.o.Finish:
			return f.finish(ctx)
		case <-time.After(f.o.Interval):
		}
	}
}

// finish applies everything the replica holds, listing it to be sure of
// that, then hands the database over: its log checkpointed into the file
// and emptied, so that a replicator taking it over finds no transaction
// it did not see (which would cost a whole snapshot), and its record
// removed, since from now on others write to it.
func (f *Follower) finish(ctx context.Context) error {
	var gapSeen bool
	for {
		f.mustList = true
		more, err := f.poll(ctx, &gapSeen)
		if err != nil {
			return fmt.Errorf("apply the last change sets: %w", err)
		}
		f.mu.Lock()
		caughtUp := f.st.caughtUp
		f.mu.Unlock()
		if !more && caughtUp {
			break
		}
		if !more {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(f.o.Interval):
			}
		}
	}
	if err := f.db.checkpoint(ctx); err != nil {
		return err
	}
	if err := f.marks.remove(); err != nil {
		return err
	}
	f.log.Info("applied the replica's last transaction; handing the database over", "db", f.path, "txid", f.applied().TXID)
	return nil
}

// poll takes one step towards the replica's newest state. It reports
// whether it made progress, in which case there may be more to do at
// once.
func (f *Follower) poll(ctx context.Context, gapSeen *bool) (bool, error) {
	applied := f.applied()
	next := getNext
	switch {
	case f.mustList:
		next, f.checked = listNext, time.Now()
	case f.unchained && !time.Now().Before(f.chainListAt):
		next, f.checked = listNext, time.Now()
		f.chainListWait = min(max(2*f.chainListWait, f.o.Interval), f.checkEvery)
		f.chainListAt = time.Now().Add(f.chainListWait)
	case time.Since(f.checked) >= f.checkEvery:
		next, f.checked = snapshotCheck, time.Now()
	}
	st, err := next(ctx, f.store, applied.TXID)
	if err != nil {
		f.mustList = true
		return false, fmt.Errorf("find the change set after txid %d: %w", applied.TXID, err)
	}
	f.mustList = false
	if st.Chained {
		f.unchained = false
	}
	switch {
	case st.Segment.Key != "":
		*gapSeen = false
		f.setCaughtUp(false)
		err := f.applySegment(ctx, st.Segment)
		if objstore.IsNotFound(err) {
			// Compaction or gc deleted the change set between the listing
			// and the fetch, having stored what replaces it first; the
			// next poll finds that.
			f.log.Debug("a listed change set is gone; listing again", "key", st.Segment.Key)
			return false, nil
		}
		if errors.Is(err, errShape) || errors.Is(err, objstore.ErrCorrupt) {
			return f.restoreLatest(ctx, applied.TXID, slog.LevelWarn, fmt.Sprintf("change set %s cannot be applied: %v", st.Segment.Key, err))
		}
		if err == nil {
			f.unchained = false
		}
		return err == nil, err
	case st.Newest > 0 && st.Newest < applied.TXID:
		// A replicator never numbers two states with one txid, so a
		// replica whose newest txid is older than the follower's is not
		// the history this database followed: it was replaced.
		return f.restoreLatest(ctx, 0, slog.LevelWarn, fmt.Sprintf("the replica holds nothing as new as the follower's txid %d (its newest is %d): it was replaced", applied.TXID, st.Newest))
	case st.Gap:
		// A snapshot can reach the store before the change sets leading
		// to it, as they travel separate queues; a gap is believed only
		// when the next poll, an interval later, still sees it, which
		// spares a full restore that a moment's wait would have avoided.
		f.setCaughtUp(false)
		if !*gapSeen {
			*gapSeen = true
			f.mustList = true // the next poll must look the same way
			return false, nil
		}
		*gapSeen = false
		return f.restoreLatest(ctx, applied.TXID, slog.LevelWarn, fmt.Sprintf("the change sets after txid %d are gone from the replica, which holds txids up to %d", applied.TXID, st.Newest))
	default:
		*gapSeen = false
		f.setCaughtUp(true)
		return false, nil
	}
}

// segmentInfix names the files a follower fetches change sets into,
// beside its database (see durable.CreateBeside).
const segmentInfix = ".ferry-segment-"

// applySegment downloads the change set ref into a private temporary
// file, verifies all of it, then applies each of its transactions after
// the follower's txid, each in its own SQLite transaction, recording each
// once it commits.
func (f *Follower) applySegment(ctx context.Context, ref layout.Segment) error {
	tmp, err := durable.CreateBeside(f.path, segmentInfix)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", ref.Key, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	rc, info, err := f.store.Get(ctx, ref.Key, nil)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", ref.Key, err)
	}
	// Compaction merges change sets older than its minimum age into ones
	// that start earlier, and deletes them: after a change set stored
	// that long ago (less a margin for the skew between the store's
	// clock and this one), the next one's key may be gone while what it
	// held is not, so the next poll lists. A follower keeping up never
	// gets here; one catching up on a long backlog lists until it is near
	// the head again. Once a poll finds the key missing, every later
	// change set is new when the follower first asks for it.
	if time.Since(info.Modified) > compact.DefaultMinAge/2 {
		f.mustList = true
	}
	_, err = io.Copy(tmp, rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("fetch %s: %w", ref.Key, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// Open reads the whole change set before it yields a page: no page of
	// a damaged object reaches the database.
	r, _, err := segment.Open(tmp, segment.Options{Key: ref.Key})
	if err != nil {
		return err
	}
	defer r.Close()
	if ps := r.Header().PageSize; ps != f.db.pageSize {
		return fmt.Errorf("%s has %d-byte pages, the database %d: %w", ref.Key, ps, f.db.pageSize, errShape)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		txn, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		applied := f.applied().TXID
		if txn.TXID <= applied {
			continue
		}
		if txn.TXID != applied+1 {
			return fmt.Errorf("%s continues at txid %d, the database is at txid %d: %w", ref.Key, txn.TXID, applied, errShape)
		}
		pages := func() (uint32, []byte, error) {
			p, err := r.NextPage()
			return p.Pgno, p.Data, err
		}
		if err := f.db.apply(ctx, txn.DBSize, pages); err != nil {
			return fmt.Errorf("apply txid %d from %s: %w", txn.TXID, ref.Key, err)
		}
		if err := f.record(mark{Replica: f.o.Replica, TXID: txn.TXID, Time: txn.Time, PageSize: f.db.pageSize}, false); err != nil {
			return err
		}
	}
}

// record notes that the database now holds m, in the mark beside it and
// in the status.
func (f *Follower) record(m mark, restored bool) error {
	if err := f.marks.write(m); err != nil {
		return err
	}
	now := time.Now()
	lag := max(now.Sub(m.Time), 0)
	f.mu.Lock()
	f.st.mark = m
	f.st.appliedAt = now
	f.st.applyLag = lag
	// Counted under the same lock as the mark, so that no status shows
	// the restored txid without the restore that brought it.
	if restored {
		f.st.restores++
	} else {
		f.st.txns++
	}
	f.mu.Unlock()
	if !restored {
		f.metrics.txns.Inc()
		f.metrics.applyLag.Observe(lag.Seconds())
		f.log.Debug("applied transaction", "txid", m.TXID, "lag", lag)
	}
	return nil
}

// restoreLatest restores the newest state the replica proves and puts it
// in place of the database's, in one transaction, logging why at level.
// With after set, a replica that proves nothing newer than after is left
// alone: restoring it would take the follower back.
func (f *Follower) restoreLatest(ctx context.Context, after uint64, level slog.Level, why string) (done bool, err error) {
	if wait := time.Until(f.restoreFailed.Add(f.restoreRetry)); wait > 0 {
		return false, fmt.Errorf("%s; the last restore failed, the next is tried in %s", why, wait.Round(time.Second))
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			f.restoreFailed = time.Now()
		}
	}()
	cat, err := restore.ReadCatalog(ctx, f.store)
	if err != nil {
		return false, err
	}
	latest := cat.Latest()
	if latest == 0 {
		if err := cat.Check(); err != nil {
			return false, fmt.Errorf("nothing to restore: %w", err)
		}
		return false, restore.ErrNoSnapshot
	}
	if latest <= after {
		return false, fmt.Errorf("the replica proves no state past txid %d, the follower's: %w", latest, cat.Check())
	}
	plan, err := cat.PlanTXID(latest)
	if err != nil {
		return false, err
	}
	f.log.Log(ctx, level, "restoring the replica's newest state", "db", f.path, "txid", latest, "why", why)
	dir, err := os.MkdirTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".ferry-follow-")
	if err != nil {
		return false, fmt.Errorf("restore beside %s: %w", f.path, err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "db")
	res, err := restore.ToFile(ctx, f.store, plan, out, restore.Options{Keys: f.o.Keys})
	if err != nil {
		return false, err
	}
	if err := f.install(ctx, out, res); err != nil {
		return false, err
	}
	f.metrics.restores.Inc()
	f.unchain()
	f.log.Info("restored the replica's newest state", "db", f.path, "txid", res.TXID, "pages", res.Pages)
	return true, nil
}

// unchain makes the follower list for the change set after its txid (see
// unchained), at once and then less and less often.
func (f *Follower) unchain() {
	f.unchained, f.chainListAt, f.chainListWait = true, time.Now(), 0
}

// install puts the restored database at src in place of the follower's.
// The old mark goes first: were the follower killed after the new state
// committed and before its mark was written, an old mark would be
// trusted against a database that no longer matches it.
func (f *Follower) install(ctx context.Context, src string, res restore.Result) error {
	if err := f.marks.remove(); err != nil {
		return err
	}
	if f.db == nil {
		if _, err := os.Stat(f.path); err == nil {
			if d, err := openDB(ctx, f.path); err == nil {
				f.db = d
			} else {
				f.log.Warn("the database cannot be opened; replacing the file", "db", f.path, "err", err)
			}
		}
	}
	if f.db != nil && f.db.pageSize == res.PageSize {
		err := f.db.copyFrom(ctx, src, res.Pages)
		if err == nil {
			return f.record(mark{Replica: f.o.Replica, TXID: res.TXID, Time: res.Time, PageSize: res.PageSize}, true)
		}
		if ctx.Err() != nil {
			return err
		}
		f.log.Warn("the restored state cannot be written through SQLite; replacing the file", "db", f.path, "err", err)
	} else if f.db != nil {
		f.log.Warn("the page size changed; replacing the file (readers that have it open must reopen it)", "db", f.path, "page_size", res.PageSize, "was", f.db.pageSize)
	}
	if err := f.replace(ctx, src); err != nil {
		return err
	}
	return f.record(mark{Replica: f.o.Replica, TXID: res.TXID, Time: res.Time, PageSize: res.PageSize}, true)
}

// replace puts the database file src at the follower's path. Only for a
// database SQLite cannot write the new state into: there is none, it is
// damaged, or its page size differs. The old -wal and -shm go first: left
// beside the new file, SQLite would replay the old WAL into it.
func (f *Follower) replace(ctx context.Context, src string) error {
	if f.db != nil {
		f.db.close()
		f.db = nil
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(f.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the old %s: %w", f.path+suffix, err)
		}
	}
	if err := os.Rename(src, f.path); err != nil {
		return fmt.Errorf("put the restored database at %s: %w", f.path, err)
	}
	if err := durable.SyncDir(filepath.Dir(f.path)); err != nil {
		return err
	}
	d, err := openDB(ctx, f.path)
	if err != nil {
		return err
	}
	f.db = d
	return nil
}

// start puts a first state in place: the one the database holds, when
// its mark can be trusted, or the replica's newest.
func (f *Follower) start(ctx context.Context) error {
	f.sweep()
	why, err := f.resume(ctx)
	if err != nil {
		return err
	}
	if why == "" {
		return nil
	}
	// A first start has nothing to restore over; anything else means the
	// database's state could not be trusted, which an operator should
	// hear about.
	level := slog.LevelWarn
	if why == noDatabase {
		level = slog.LevelInfo
	}
	if _, err := f.restoreLatest(ctx, 0, level, why); err != nil {
		return fmt.Errorf("restore %s from %s: %w", f.path, f.o.Replica, err)
	}
	return nil
}

const noDatabase = "no database at the path yet"

// resume opens the database and continues from its mark. It returns why
// it cannot, when it cannot, and an error only for what a restore would
// not cure.
func (f *Follower) resume(ctx context.Context) (string, error) {
	_, serr := os.Stat(f.path)
	if errors.Is(serr, os.ErrNotExist) {
		if err := f.marks.remove(); err != nil {
			return "", err
		}
		return noDatabase, nil
	}
	if serr != nil {
		return "", serr
	}
	m, err := readMark(f.path, f.o.Replica)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "the database has no record of the txid it holds (" + markPath(f.path) + " is missing)", nil
	case err != nil:
		return err.Error(), nil
	}
	d, err := openDB(ctx, f.path)
	if err != nil {
		return err.Error(), nil
	}
	if d.pageSize != m.PageSize {
		d.close()
		return fmt.Sprintf("the page size is %d, the record says %d", d.pageSize, m.PageSize), nil
	}
	if err := d.quickCheck(ctx); err != nil {
		d.close()
		return err.Error(), nil
	}
	f.db = d
	f.mu.Lock()
	f.st.mark = m
	f.st.continued = m.TXID
	f.mu.Unlock()
	f.log.Info("continuing from the recorded state, without a restore", "db", f.path, "txid", m.TXID)
	return "", nil
}

// sweep removes what a follower killed during a restore or a download
// left beside the database.
func (f *Follower) sweep() {
	base := filepath.Join(filepath.Dir(f.path), "."+filepath.Base(f.path))
	for _, pattern := range []string{base + ".ferry-follow-*", base + ".ferry-segment-*"} {
		old, _ := filepath.Glob(pattern)
		for _, p := range old {
			os.RemoveAll(p)
		}
	}
}

func (f *Follower) applied() mark {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.mark
}

func (f *Follower) setCaughtUp(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.caughtUp = v
	f.st.polled = time.Now()
}

func (f *Follower) noteError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil:
		if !f.st.failingSince.IsZero() {
			f.log.Info("the follower works again", "failed_for", time.Since(f.st.failingSince).Round(time.Millisecond))
		}
		f.st.failingSince, f.st.lastError = time.Time{}, ""
	default:
		if f.st.failingSince.IsZero() {
			f.st.failingSince = time.Now()
			f.log.Warn("the follower is failing", "txid", f.st.mark.TXID, "err", err)
		}
		f.st.lastError = err.Error()
		f.metrics.errors.Inc()
	}
}
