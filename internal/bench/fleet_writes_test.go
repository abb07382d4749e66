package bench

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The fleet's write phase: writers on 1% of the databases, each one
// small insert every writeEvery, for writeFor.
const (
	writeEvery = 200 * time.Millisecond
	writeFor   = 20 * time.Second
	// lagEvery spaces the samples of the lag the daemon reports for
	// the written databases. A status of every database is one request,
	// cheaper for the daemon than one a database once the fleet is
	// large, and each costs it more the more often it is asked.
	lagEvery = time.Second
)

// writeFigures is what a write phase measured.
type writeFigures struct {
	lagPeak  float64
	p50, p99 time.Duration
	peak     procPeak
	cpuPct   float64
}

// writePhase runs a writer on each of dbs. With addr, it samples the lag
// the daemon reports for them, and with p, the proxy in front of their
// replica, it times each commit from its return to the server's
// acknowledgement of the first object that carries it: the change set
// holding its txid, or a snapshot at or past it. Nothing polls the
// daemon for that, so the figure costs the daemon nothing and is exact
// to the millisecond.
func writePhase(b *testing.B, c *child, addr string, p *requestCounter, dbs []string) writeFigures {
	b.Helper()
	c.watch.reset()
	cpu0 := childCPU(b, c.pid())
	start := time.Now()
	var s *lagSampler
	if addr != "" {
		s = sampleLag(addr, dbs)
	}
	var before map[string]int64
	if p != nil {
		before = p.counts()
	}
	commits := runWriters(b, dbs)
	took := time.Since(start)
	fig := writeFigures{cpuPct: 100 * float64(childCPU(b, c.pid())-cpu0) / float64(took), peak: c.watch.peak()}
	c.alive(b)
	if s != nil {
		fig.lagPeak = s.stop()
	}
	if addr == "" || p == nil {
		return fig
	}
	finals := caughtUp(b, c, addr, dbs, commits)
	b.Logf("%s: requests while %d databases were written and caught up: %v", c.name, len(dbs), p.since(before))
	var lags []time.Duration
	for i, db := range dbs {
		l, err := commitLags(p.storedOf(filepath.Base(db)), commits[i], finals[i])
		if err != nil {
			b.Errorf("%s: %s: %v", c.name, db, err)
			continue
		}
		lags = append(lags, l...)
	}
	fig.p50, fig.p99 = percentile(lags, 50), percentile(lags, 99)
	return fig
}

// lagSampler asks a daemon for its status every lagEvery and keeps the
// highest lag it reports for a few databases.
type lagSampler struct {
	mu   sync.Mutex
	peak float64
	quit chan struct{}
	done chan struct{}
}

func sampleLag(addr string, dbs []string) *lagSampler {
	s := &lagSampler{quit: make(chan struct{}), done: make(chan struct{})}
	want := map[string]bool{}
	for _, db := range dbs {
		want[db] = true
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(lagEvery)
		defer tick.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
			rep, err := fleetStatus(addr, "")
			if err != nil {
				continue
			}
			s.mu.Lock()
			for _, db := range rep.DBs {
				if want[db.DB] {
					for _, t := range db.Targets {
						s.peak = max(s.peak, t.LagSeconds)
					}
				}
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *lagSampler) stop() float64 {
	close(s.quit)
	<-s.done
	return s.peak
}

// caughtUp waits until every one of dbs has every captured txid
// replicated, a second past its last commit, which the daemon has read
// by then, and returns each one's newest txid.
func caughtUp(b *testing.B, c *child, addr string, dbs []string, commits [][]time.Time) []uint64 {
	b.Helper()
	var last time.Time
	for _, cs := range commits {
		if len(cs) > 0 && cs[len(cs)-1].After(last) {
			last = cs[len(cs)-1]
		}
	}
	time.Sleep(time.Until(last.Add(time.Second)))
	finals := make([]uint64, len(dbs))
	deadline := time.Now().Add(2 * time.Minute)
	for left := len(dbs); left > 0; time.Sleep(250 * time.Millisecond) {
		for i, db := range dbs {
			if finals[i] > 0 {
				continue
			}
			rep, err := fleetStatus(addr, db)
			if err != nil || len(rep.DBs) != 1 || rep.DBs[0].TXID == 0 {
				continue
			}
			st := rep.DBs[0]
			done := true
			for _, t := range st.Targets {
				done = done && t.Replicated >= st.TXID
			}
			if done {
				finals[i] = st.TXID
				left--
			} else if time.Now().After(deadline) {
				b.Fatalf("%s: %s did not catch up within 2 minutes of its last commit: %+v\n%s", c.name, db, st, c.tail(40))
			}
		}
		c.alive(b)
	}
	return finals
}

// commitLags matches commits to txids from the end: once every commit
// is captured, the newest txid is the last commit's, and each commit
// before it is one less. Counting from the start would need the txid
// before the first commit, which a database idle since a restart does
// not report. A commit arrives with the change set holding its txid (the
// one starting nearest at or before it) or a snapshot at or past it,
// whichever the server acknowledged first after the commit returned.
func commitLags(stored []storedPut, commits []time.Time, final uint64) ([]time.Duration, error) {
	n := uint64(len(commits))
	if final < n {
		return nil, fmt.Errorf("its newest txid %d is older than its %d commits", final, n)
	}
	lags := make([]time.Duration, 0, n)
	for i, c := range commits {
		txid := final - n + 1 + uint64(i)
		var holder *storedPut
		var arrived time.Time
		for j := range stored {
			sp := &stored[j]
			switch {
			case sp.snapshot && sp.txid >= txid && !sp.at.Before(c):
				if arrived.IsZero() || sp.at.Before(arrived) {
					arrived = sp.at
				}
			case !sp.snapshot && sp.txid <= txid:
				if holder == nil || sp.txid > holder.txid || (sp.txid == holder.txid && sp.at.Before(holder.at)) {
					holder = sp
				}
			}
		}
		if holder != nil && !holder.at.Before(c) && (arrived.IsZero() || holder.at.Before(arrived)) {
			arrived = holder.at
		}
		if arrived.IsZero() {
			return nil, fmt.Errorf("no change set or snapshot stored after its commit %d returned carries txid %d", i+1, txid)
		}
		lags = append(lags, arrived.Sub(c))
	}
	return lags, nil
}

// runWriters inserts one small row into each of dbs every writeEvery
// for writeFor, and returns when each commit returned.
func runWriters(b *testing.B, dbs []string) [][]time.Time {
	b.Helper()
	commits := make([][]time.Time, len(dbs))
	var wg sync.WaitGroup
	for i, path := range dbs {
		db, err := openApp(path)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(writeEvery)
			defer tick.Stop()
			for end := time.Now().Add(writeFor); time.Now().Before(end); <-tick.C {
				if _, err := db.Exec("INSERT INTO t(v) VALUES (?)", time.Now().Format(time.RFC3339Nano)); err != nil {
					b.Errorf("insert into %s: %v", path, err)
					return
				}
				commits[i] = append(commits[i], time.Now())
			}
		}()
		// Closed once the daemon stops: a last connection's close
		// checkpoints the log, which is not part of what is measured.
		b.Cleanup(func() { db.Close() })
	}
	wg.Wait()
	return commits
}
