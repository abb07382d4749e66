package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Kind names a class of problem that Check reports.
type Kind string

// Problem kinds.
const (
	// KindTooOld: an entry has been in its queue longer than the queue's
	// age limit; its uploads keep failing, or nothing is claiming them.
	KindTooOld Kind = "too-old"
	// KindStaleTmp: something in tmp/ (or a meta.json.tmp) is older than
	// Limits.TmpMaxAge: a write was abandoned. Open removes it.
	KindStaleTmp Kind = "stale-tmp"
	// KindOrphan: an entry missing its data or meta.json, or a file that
	// has no business where it is.
	KindOrphan Kind = "orphan"
	// KindDuplicate: one entry ID in two places.
	KindDuplicate Kind = "duplicate"
	// KindCorrupt: an entry whose meta.json cannot be read, or whose data
	// size disagrees with it. The spool never hands it out.
	KindCorrupt Kind = "corrupt"
	// KindFailed: an entry in the failed queue, waiting for a person.
	KindFailed Kind = "failed"
	// KindUnreadable: the spool itself could not be checked (Monitor only).
	KindUnreadable Kind = "unreadable"
)

// Kinds returns every problem kind.
func Kinds() []Kind {
	return []Kind{KindTooOld, KindStaleTmp, KindOrphan, KindDuplicate, KindCorrupt, KindFailed, KindUnreadable}
}

// Limits are the thresholds of Check.
type Limits struct {
	// MaxAge is how long an entry may wait in a queue; default 1h.
	MaxAge time.Duration
	// QueueMaxAge overrides MaxAge per queue; a negative value turns the
	// limit off for that queue.
	QueueMaxAge map[string]time.Duration
	// TmpMaxAge is how long anything may sit in tmp/; default 15m.
	TmpMaxAge time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxAge <= 0 {
		l.MaxAge = time.Hour
	}
	if l.TmpMaxAge <= 0 {
		l.TmpMaxAge = 15 * time.Minute
	}
	return l
}

func (l Limits) maxAge(queue string) time.Duration {
	if d, ok := l.QueueMaxAge[queue]; ok {
		return d
	}
	return l.MaxAge
}

// Check inspects the spool in dir and reports its problems and contents.
// It only reads, and takes no lock, so it runs beside the daemon that owns
// the spool. A daemon moving entries while Check looks can make one entry
// look duplicated or missing for one run; Monitor confirms a problem over
// several runs before raising it. Check returns an error only when dir
// cannot be read as a spool.
func Check(dir string, limits Limits, now time.Time) (Report, error) {
	dir = filepath.Clean(dir)
	c := &checker{
		dir:    dir,
		limits: limits.withDefaults(),
		now:    now,
		locs:   map[ID][]string{},
		r:      Report{Dir: dir, Time: now, Problems: []Problem{}, Queues: []QueueStats{}},
	}
	qs, err := os.ReadDir(queuesDir(dir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return Report{}, fmt.Errorf("check spool %s: %w", dir, serr)
			}
			return Report{}, fmt.Errorf("check spool %s: not a spool directory (no %s/ in it)", dir, queuesName)
		}
		return Report{}, fmt.Errorf("check spool %s: %w", dir, err)
	}
	c.checkTmp()
	c.checkIncoming()
	for _, de := range qs {
		p := filepath.Join(queuesDir(dir), de.Name())
		if !de.IsDir() || !validQueue(de.Name()) {
			c.problem(Problem{Kind: KindOrphan, Path: p, Detail: "unexpected file in " + queuesName + "/: not a queue"})
			continue
		}
		c.checkQueue(de.Name())
	}
	c.checkDuplicates()
	if c.err != nil {
		return Report{}, fmt.Errorf("check spool %s: %w", dir, c.err)
	}
	slices.SortFunc(c.r.Problems, func(a, b Problem) int {
		return strings.Compare(a.Path, b.Path)
	})
	return c.r, nil
}

type checker struct {
	dir    string
	limits Limits
	now    time.Time
	r      Report
	locs   map[ID][]string // where each entry ID was seen
	err    error           // first I/O error
}

func (c *checker) problem(p Problem) { c.r.Problems = append(c.r.Problems, p) }

// readDir lists path; a directory that vanished (the daemon moved it while
// we looked) reads as empty, and other errors end the check.
func (c *checker) readDir(path string) ([]os.DirEntry, bool) {
	des, err := os.ReadDir(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && c.err == nil {
			c.err = err
		}
		return nil, false
	}
	return des, true
}

func (c *checker) checkTmp() {
	tmp := filepath.Join(c.dir, tmpName)
	des, _ := c.readDir(tmp)
	for _, de := range des {
		p := filepath.Join(tmp, de.Name())
		c.staleTmp(p, "", "")
	}
}

// checkIncoming looks at what other processes handed over (Handoff,
// RequestRetry): a hand-over abandoned part way, and entries or requests
// the owner has not taken in longer than their queue's age limit, which
// says that no ferry runs on the spool, or one that does not take them.
func (c *checker) checkIncoming() {
	in := filepath.Join(c.dir, incomingName)
	des, _ := c.readDir(in)
	for _, de := range des {
		p := filepath.Join(in, de.Name())
		switch name := de.Name(); {
		case name == ".tmp":
			staging, _ := c.readDir(p)
			for _, st := range staging {
				c.staleTmp(filepath.Join(p, st.Name()), "", "")
			}
		case name == retryName:
			requests, _ := c.readDir(p)
			for _, r := range requests {
				c.notTaken(filepath.Join(p, r.Name()), r.Name(), "a retry of its failed entries asked for")
			}
		case validQueue(name) && de.IsDir():
			entries, _ := c.readDir(p)
			for _, e := range entries {
				c.notTaken(filepath.Join(p, e.Name()), name, "handed over by another process")
			}
		}
	}
}

// notTaken reports p, handed over for queue, if it has waited longer than
// the queue's age limit for the owner to take it.
func (c *checker) notTaken(p, queue, what string) {
	fi, err := os.Lstat(p)
	if err != nil {
		return
	}
	age := c.now.Sub(fi.ModTime())
	if limit := c.limits.maxAge(queue); limit > 0 && age > limit {
		c.problem(Problem{Kind: KindTooOld, Queue: queue, Path: p, Age: age,
			Detail: fmt.Sprintf("%s %s ago and not taken in (limit %s): no ferry that owns this spool is running", what, roundAge(age), roundAge(limit))})
	}
}

// staleTmp reports p if it and what it directly holds are older than the
// tmp limit.
func (c *checker) staleTmp(p, queue string, id ID) {
	newest, ok := newestMtime(p)
	if !ok {
		return
	}
	age := c.now.Sub(newest)
	if age <= c.limits.TmpMaxAge {
		return
	}
	c.problem(Problem{Kind: KindStaleTmp, Queue: queue, Entry: id, Path: p, Age: age,
		Detail: fmt.Sprintf("abandoned write, untouched for %s (limit %s); the owner removes it",
			roundAge(age), roundAge(c.limits.TmpMaxAge))})
}

func newestMtime(p string) (time.Time, bool) {
	fi, err := os.Lstat(p)
	if err != nil {
		return time.Time{}, false
	}
	t := fi.ModTime()
	if fi.IsDir() {
		des, _ := os.ReadDir(p)
		for _, de := range des {
			if ci, err := de.Info(); err == nil && ci.ModTime().After(t) {
				t = ci.ModTime()
			}
		}
	}
	return t, true
}

func (c *checker) checkQueue(name string) {
	qd := queueDir(c.dir, name)
	st := QueueStats{Name: name}
	des, ok := c.readDir(qd)
	if !ok {
		return
	}
	for _, de := range des {
		p := filepath.Join(qd, de.Name())
		_, isID := parseID(de.Name())
		switch {
		case de.Name() == checkoutName && de.IsDir():
			outs, _ := c.readDir(p)
			for _, o := range outs {
				op := filepath.Join(p, o.Name())
				if _, ok := parseID(o.Name()); ok && o.IsDir() {
					c.checkEntry(name, ID(o.Name()), op, true, &st)
					continue
				}
				c.problem(Problem{Kind: KindOrphan, Queue: name, Path: op, Detail: "unexpected file in checkout/: not an entry"})
			}
		case isID && de.IsDir():
			c.checkEntry(name, ID(de.Name()), p, false, &st)
		default:
			c.problem(Problem{Kind: KindOrphan, Queue: name, Path: p, Detail: "unexpected file in queue directory: not an entry"})
		}
	}
	c.r.Queues = append(c.r.Queues, st)
	c.r.Entries += st.Entries
	c.r.Bytes += st.Bytes
}

func (c *checker) checkEntry(queue string, id ID, p string, out bool, st *QueueStats) {
	des, ok := c.readDir(p)
	if !ok {
		return
	}
	nanos, _ := parseID(string(id))
	idAge := c.now.Sub(time.Unix(0, nanos))
	var data os.FileInfo
	hasMeta := false
	for _, de := range des {
		fp := filepath.Join(p, de.Name())
		switch de.Name() {
		case dataName:
			fi, err := de.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return // the entry moved while we looked
			}
			if err == nil && fi.Mode().IsRegular() {
				data = fi
				continue
			}
		case metaName:
			hasMeta = true
			continue
		case metaTmpName:
			c.staleTmp(fp, queue, id)
			continue
		}
		c.problem(Problem{Kind: KindOrphan, Queue: queue, Entry: id, Path: fp, Age: idAge,
			Detail: "unexpected file in entry directory"})
	}
	switch {
	case data == nil && !hasMeta:
		c.problem(Problem{Kind: KindOrphan, Queue: queue, Entry: id, Path: p, Age: idAge, Detail: "entry directory has neither data nor meta.json"})
		return
	case data == nil:
		c.problem(Problem{Kind: KindOrphan, Queue: queue, Entry: id, Path: p, Age: idAge, Detail: "entry has meta.json but no data"})
		return
	case !hasMeta:
		c.problem(Problem{Kind: KindOrphan, Queue: queue, Entry: id, Path: p, Age: idAge, Detail: "entry has data but no meta.json"})
		return
	}
	b, err := os.ReadFile(filepath.Join(p, metaName))
	if errors.Is(err, fs.ErrNotExist) {
		return // moved since we listed it
	}
	if err != nil {
		c.problem(Problem{Kind: KindCorrupt, Queue: queue, Entry: id, Path: p, Age: idAge, Detail: "cannot read meta.json: " + err.Error()})
		return
	}
	c.locs[id] = append(c.locs[id], p)
	st.Entries++
	st.Bytes += data.Size()
	if out {
		st.CheckedOut++
	}
	m, err := parseMeta(b)
	if err != nil {
		c.problem(Problem{Kind: KindCorrupt, Queue: queue, Entry: id, Path: p, Age: idAge, Detail: err.Error()})
		return
	}
	if m.Size != data.Size() {
		c.problem(Problem{Kind: KindCorrupt, Queue: queue, Entry: id, Path: p, Age: idAge,
			Detail: fmt.Sprintf("data is %d bytes but meta.json says %d", data.Size(), m.Size)})
		return
	}
	age := c.now.Sub(m.Created)
	st.Oldest = max(st.Oldest, age)
	if queue == FailedQueue {
		c.problem(Problem{Kind: KindFailed, Queue: queue, Entry: id, Path: p, Age: age, From: m.From,
			Detail: fmt.Sprintf("failed permanently in queue %s after %d attempts: %s", m.From, m.Attempts, m.LastError)})
		return
	}
	if limit := c.limits.maxAge(queue); limit > 0 && age > limit {
		d := fmt.Sprintf("entry is %s old, over the %s limit of queue %s; %d failed attempts", roundAge(age), roundAge(limit), queue, m.Attempts)
		if m.LastError != "" {
			d += ", last error: " + m.LastError
		}
		c.problem(Problem{Kind: KindTooOld, Queue: queue, Entry: id, Path: p, Age: age, Detail: d})
	}
}

// checkDuplicates reports IDs seen in two places. An entry that moved while
// Check walked (claimed from the queue into checkout/) can be seen in both,
// so each place is looked at again and only those still there count.
func (c *checker) checkDuplicates() {
	for id, locs := range c.locs {
		if len(locs) < 2 {
			continue
		}
		var still []string
		for _, p := range locs {
			if _, err := os.Lstat(p); err == nil {
				still = append(still, p)
			}
		}
		slices.Sort(still)
		for _, p := range still[min(1, len(still)):] {
			nanos, _ := parseID(string(id))
			c.problem(Problem{Kind: KindDuplicate, Queue: queueOf(c.dir, p), Entry: id, Path: p,
				Age: c.now.Sub(time.Unix(0, nanos)), Detail: "entry also at " + still[0]})
		}
	}
}

// queueOf returns the queue of an entry path under dir/q/.
func queueOf(dir, p string) string {
	rel, err := filepath.Rel(queuesDir(dir), p)
	if err != nil {
		return ""
	}
	q, _, _ := strings.Cut(rel, string(filepath.Separator))
	return q
}

func roundAge(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute)
	case d >= time.Minute:
		return d.Round(time.Second)
	default:
		return d.Round(time.Millisecond)
	}
}
