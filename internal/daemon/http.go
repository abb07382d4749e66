package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrydb/ferry/internal/capture"
)

// StatusReport is what GET /status answers: every database's state, with
// each target's lag worked out.
type StatusReport struct {
	DBs []DBStatus `json:"dbs"`
}

// DBStatus is one database's part of a StatusReport.
type DBStatus struct {
	capture.Status
	Lag map[string]float64 `json:"lag_seconds"`
}

// SyncReport is what POST /sync answers.
type SyncReport struct {
	// Done is true when every transaction committed before the request
	// is durable in every target.
	Done   bool         `json:"done"`
	Error  string       `json:"error,omitempty"`
	Status StatusReport `json:"status"`
}

func report(dbs []*capture.Replicator) StatusReport {
	rep := StatusReport{DBs: []DBStatus{}}
	for _, r := range dbs {
		st := r.Status()
		ds := DBStatus{Status: st, Lag: map[string]float64{}}
		for _, t := range st.Targets {
			ds.Lag[t.URL] = t.LagSeconds
		}
		rep.DBs = append(rep.DBs, ds)
	}
	return rep
}

// handler serves /metrics, /healthz, GET /status and POST /sync for dbs,
// and with files, /healthz answers for the files spool too. POST /sync
// takes ?timeout= (a Go duration, default 30s).
func (d *daemon) handler(dbs []*capture.Replicator, files bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.o.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		bad := troubles(dbs, d.cfg.HealthzMaxLag, time.Now())
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
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, report(dbs))
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
		ctx, cancel := context.WithTimeout(req.Context(), timeout)
		defer cancel()
		var err error
		for _, r := range dbs {
			if _, err = r.Sync(ctx); err != nil {
				break
			}
		}
		rep := SyncReport{Done: err == nil, Status: report(dbs)}
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
