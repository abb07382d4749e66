package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/statuspage"
)

// StatusReport is what GET /status answers: every database's state, with
// each target's lag worked out.
type StatusReport struct {
	DBs []DBStatus `json:"dbs"`
	// Files is the daemon's plain files, on its HTTP address, when it
	// has inboxes and the request names no database.
	Files *FilesStatus `json:"files,omitempty"`
}

// DBStatus is one database's part of a StatusReport.
type DBStatus struct {
	capture.Status
	// State is "active" while ferry holds the database, "idle" while every
	// transaction is on every target and nothing holds it until it is
	// written, "starting" while it waits its turn to be opened at start,
	// "failed" when it could not be opened.
	State string             `json:"state"`
	Lag   map[string]float64 `json:"lag_seconds"`
}

// SyncReport is what POST /sync answers.
type SyncReport struct {
	// Done is true when every transaction committed before the request
	// is durable in every target.
	Done   bool         `json:"done"`
	Error  string       `json:"error,omitempty"`
	Status StatusReport `json:"status"`
}

func report(units []*unit) StatusReport {
	rep := StatusReport{DBs: []DBStatus{}}
	for _, u := range units {
		st := u.Status()
		ds := DBStatus{Status: st, State: u.State(), Lag: map[string]float64{}}
		for _, t := range st.Targets {
			ds.Lag[t.URL] = t.LagSeconds
		}
		rep.DBs = append(rep.DBs, ds)
	}
	return rep
}

// handler serves /metrics, /healthz, GET /status and POST /sync for the
// units, all of the daemon's or, with entry, those found under it, and
// with files, /healthz answers for the files spool too. GET
// /status and POST /sync take ?db=PATH for one database, which a socket
// of one database's own ignores; POST /sync takes ?timeout= (a Go
// duration, default 30s).
func (d *daemon) handler(all func() []*unit, entry *dirEntry, files, own bool) http.Handler {
	mux := http.NewServeMux()
	if !own && files {
		// The status page, on the HTTP address alone: a control socket
		// is for the command line.
		mux.Handle("/", statuspage.Handler(d.history))
	}
	// chosen returns the units a request names: all, or the one ?db=
	// names; ok is false when it names one not replicated here.
	chosen := func(req *http.Request) (units []*unit, ok bool) {
		db := req.URL.Query().Get("db")
		if db == "" || own {
			return all(), true
		}
		// One database: found by path, not by listing thousands.
		if u := d.fleet.get(db); u != nil && (entry == nil || u.entry == entry) {
			return []*unit{u}, true
		}
		return nil, false
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.o.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		bad := troubles(all(), d.cfg.HealthzMaxLag, time.Now())
		if files {
			bad = append(bad, d.filesTrouble(d.cfg.HealthzMaxLag, time.Now())...)
		}
		if len(bad) == 0 {
			w.Write([]byte("ok\n"))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(strings.Join(bad, "\n") + "\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, req *http.Request) {
		units, ok := chosen(req)
		if !ok {
			http.Error(w, "db: not replicated by this daemon", http.StatusNotFound)
			return
		}
		rep := report(units)
		if files && req.URL.Query().Get("db") == "" {
			rep.Files = d.filesStatus(time.Now())
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /sync", func(w http.ResponseWriter, req *http.Request) {
		timeout := 30 * time.Second
		if v := req.URL.Query().Get("timeout"); v != "" {
			t, err := time.ParseDuration(v)
			if err != nil || t <= 0 {
				http.Error(w, "timeout: want a positive duration such as 30s", http.StatusBadRequest)
				return
			}
			timeout = t
		}
		units, ok := chosen(req)
		if !ok {
			http.Error(w, "db: not replicated by this daemon", http.StatusNotFound)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), timeout)
		defer cancel()
		err := syncUnits(ctx, units, len(units) == 1)
		rep := SyncReport{Done: err == nil, Status: report(units)}
		code := http.StatusOK
		if err != nil {
			rep.Error = err.Error()
			code = http.StatusGatewayTimeout
			if !errors.Is(err, context.DeadlineExceeded) {
				code = http.StatusServiceUnavailable
			}
		}
		writeJSON(w, code, rep)
	})
	return mux
}

// syncUnits syncs every unit, at most a few at a time. An idle database
// is woken only when one is named alone or its log changed since it went
// idle: a fleet of idle databases holds nothing to sync, and waking
// thousands to find that out would cost a request or more each.
func syncUnits(ctx context.Context, units []*unit, wakeIdle bool) error {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	slots := make(chan struct{}, openers)
	now := time.Now()
	for _, u := range units {
		if !wakeIdle && u.State() == stateIdle && !u.wakeDue(now) {
			continue
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if _, err := u.Sync(ctx); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("%s: %w", u.db.Path, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// URLs carry & between their parameters; HTML escaping would print
	// it as \u0026.
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// historyEvery spaces the samples of every target's lag for the status
// page's charts, which keep the peak of each minute.
const historyEvery = 10 * time.Second

// recordHistory samples every target's lag into d.history until ctx ends.
func (d *daemon) recordHistory(ctx context.Context) {
	tick := time.NewTicker(historyEvery)
	defer tick.Stop()
	var samples []statuspage.Sample
	for {
		samples = samples[:0]
		for _, u := range d.fleet.all() {
			st := u.Status()
			for _, t := range st.Targets {
				samples = append(samples, statuspage.Sample{DB: st.DB, Target: t.URL, Lag: t.LagSeconds})
			}
		}
		d.history.Record(time.Now(), samples)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
