package follow

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// state is the follower's position and health, behind Follower.mu.
type state struct {
	mark      mark      // what the database holds
	appliedAt time.Time // when it was put in place
	applyLag  time.Duration
	txns      uint64
	restores  int
	continued uint64 // the txid a start continued from; 0 when it restored

	caughtUp bool      // the last poll found nothing past mark.TXID
	polled   time.Time // when it ran

	failingSince time.Time
	lastError    string
}

// Status is what GET /status answers.
type Status struct {
	Replica string `json:"replica"`
	DB      string `json:"db"`
	// TXID is the txid the database holds; AppliedTime is when that
	// transaction committed at the source.
	TXID        uint64    `json:"applied_txid"`
	AppliedTime time.Time `json:"applied_time"`
	// LagSeconds: see Follower.lag.
	LagSeconds float64 `json:"lag_seconds"`
	// ApplyLagSeconds is, for the last transaction applied, the time from
	// its commit at the source to its commit here.
	ApplyLagSeconds float64 `json:"apply_lag_seconds"`
	CaughtUp        bool    `json:"caught_up"`
	AppliedTxns     uint64  `json:"applied_txns"`
	Restores        int     `json:"restores"`
	// ContinuedFromTXID is the txid this run started from without a
	// restore, 0 when it started with one.
	ContinuedFromTXID uint64     `json:"continued_from_txid"`
	LastError         string     `json:"last_error"`
	FailingSince      *time.Time `json:"failing_since,omitempty"`
}

// Status reports where the follower stands.
func (f *Follower) Status() Status {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Status{
		Replica: f.o.Replica, DB: f.path,
		TXID: f.st.mark.TXID, AppliedTime: f.st.mark.Time,
		LagSeconds:      f.lagLocked(now).Seconds(),
		ApplyLagSeconds: f.st.applyLag.Seconds(),
		CaughtUp:        f.st.caughtUp,
		AppliedTxns:     f.st.txns, Restores: f.st.restores,
		ContinuedFromTXID: f.st.continued,
		LastError:         f.st.lastError,
	}
	if !f.st.failingSince.IsZero() {
		t := f.st.failingSince
		s.FailingSince = &t
	}
	return s
}

// lagLocked is how far behind the source the follower may be now. The
// follower only learns what the replica holds when it polls, so:
//
//   - When the last poll succeeded and found nothing past the follower's
//     txid, the lag is 0: as of that poll, at most one interval ago, the
//     follower held everything the replica did. What the replicator has
//     not uploaded yet is its own lag, which its status reports.
//   - Otherwise (work was found and is being applied, or the poll
//     failed) it is now minus the commit time of the newest transaction
//     applied: an upper bound on the age of the oldest transaction the
//     follower lacks, since that one committed after it. It is measured
//     against the source's clock, so a skew between the machines shows
//     in it; on one machine it is exact.
//
// The time from a commit at the source to the same commit here, per
// transaction, is ferry_follow_apply_lag_seconds.
func (f *Follower) lagLocked(now time.Time) time.Duration {
	if f.st.mark.TXID == 0 || (f.st.caughtUp && f.st.failingSince.IsZero()) {
		return 0
	}
	return max(now.Sub(f.st.mark.Time), 0)
}

// troubles returns why /healthz should answer 503, or nothing.
func (f *Follower) troubles(now time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	limit := f.o.HealthzMaxLag
	var out []string
	if f.st.mark.TXID == 0 {
		out = append(out, fmt.Sprintf("%s: no state in place yet", f.path))
	}
	if !f.st.failingSince.IsZero() && now.Sub(f.st.failingSince) > limit {
		out = append(out, fmt.Sprintf("%s <- %s: failing for %s (limit %s): %s", f.path, f.o.Replica, now.Sub(f.st.failingSince).Round(time.Second), limit, f.st.lastError))
	}
	if lag := f.lagLocked(now); lag > limit {
		out = append(out, fmt.Sprintf("%s <- %s: lag %s (limit %s) at txid %d", f.path, f.o.Replica, lag.Round(time.Second), limit, f.st.mark.TXID))
	}
	return out
}

// metrics are the follower's Prometheus series.
type metrics struct {
	txns     prometheus.Counter
	restores prometheus.Counter
	errors   prometheus.Counter
	applyLag prometheus.Histogram
	requests *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, f *Follower) *metrics {
	m := &metrics{
		txns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_follow_applied_txns_total", Help: "Transactions applied from change sets."}),
		restores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_follow_restores_total", Help: "Times the newest state was restored anew in place of the database's."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_follow_errors_total", Help: "Polls that failed."}),
		applyLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ferry_follow_apply_lag_seconds",
			Help:    "Time from a transaction's commit at the source to its commit in the follower's database.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_follow_http_requests_total", Help: "HTTP requests served, by path and status code."}, []string{"path", "code"}),
	}
	reg.MustRegister(m.txns, m.restores, m.errors, m.applyLag, m.requests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_follow_applied_txid", Help: "The txid the follower's database holds."},
			func() float64 { return float64(f.Status().TXID) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_follow_lag_seconds", Help: "How far behind the source the follower may be (see /status)."},
			func() float64 { return f.Status().LagSeconds }))
	return m
}

// Handler serves GET /status (JSON), /metrics (Prometheus) and /healthz
// (503 with one line per trouble when the lag or a failure has lasted
// past HealthzMaxLag, or no state is in place yet).
func (f *Follower) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(f.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		// Replica URLs carry & between their parameters.
		enc.SetEscapeHTML(false)
		enc.Encode(f.Status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		bad := f.troubles(time.Now())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(bad) == 0 {
			w.Write([]byte("ok\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, line := range bad {
			w.Write([]byte(line + "\n"))
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(cw, r)
		path := r.URL.Path
		switch path {
		case "/status", "/metrics", "/healthz":
		default:
			// Every other path is one series, so that a scanner cannot
			// grow the registry without bound.
			path = "other"
		}
		f.metrics.requests.WithLabelValues(path, strconv.Itoa(cw.code)).Inc()
	})
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
