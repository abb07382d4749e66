package spool

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Monitor runs Check on a spool at an interval and reports problems that
// persist. A problem (its kind and path) is raised only after it has been
// seen in confirm consecutive checks, which filters out what a daemon
// moving entries makes one Check see for an instant. Raising a problem logs
// it at Warn and counts it; its end is logged at Info.
//
// Metrics, labelled with the spool's directory so several monitors share a
// registry: ferry_spool_problems{kind} (raised now) and
// ferry_spool_problems_raised_total{kind}.
type Monitor struct {
	dir     string
	limits  Limits
	every   time.Duration
	confirm int
	log     *slog.Logger
	now     func() time.Time

	seen   map[string]int      // consecutive checks each problem was seen in
	raised map[string]raisedAt // problems raised and not yet ended

	problems *prometheus.GaugeVec
	total    *prometheus.CounterVec
}

type raisedAt struct {
	p  Problem
	at time.Time
}

// NewMonitor returns a Monitor of the spool in dir; Run starts it. confirm
// below 1 counts as 1; a nil logger discards; a nil reg registers nothing.
// It panics if reg refuses the metrics, as for any duplicate registration.
func NewMonitor(dir string, limits Limits, every time.Duration, confirm int, logger *slog.Logger, reg prometheus.Registerer) *Monitor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	labels := prometheus.Labels{"spool": dir}
	m := &Monitor{
		dir:     dir,
		limits:  limits,
		every:   every,
		confirm: max(confirm, 1),
		log:     logger,
		now:     time.Now,
		seen:    map[string]int{},
		raised:  map[string]raisedAt{},
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "ferry_spool_problems",
			Help:        "Spool problems raised now (seen in enough consecutive checks), by kind.",
			ConstLabels: labels,
		}, []string{"kind"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "ferry_spool_problems_raised_total",
			Help:        "Spool problems raised since start, by kind.",
			ConstLabels: labels,
		}, []string{"kind"}),
	}
	for _, k := range Kinds() {
		m.problems.WithLabelValues(string(k))
		m.total.WithLabelValues(string(k))
	}
	if reg != nil {
		reg.MustRegister(m.problems, m.total)
	}
	return m
}

// Run checks the spool at once and then every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		m.cycle()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cycle runs one Check and updates what is raised.
func (m *Monitor) cycle() {
	now := m.now()
	r, err := Check(m.dir, m.limits, now)
	problems := r.Problems
	if err != nil {
		problems = []Problem{{Kind: KindUnreadable, Path: m.dir, Detail: err.Error()}}
	}
	current := make(map[string]bool, len(problems))
	for _, p := range problems {
		k := p.Key()
		if current[k] {
			continue
		}
		current[k] = true
		m.seen[k]++
		if _, up := m.raised[k]; up || m.seen[k] < m.confirm {
			continue
		}
		m.raised[k] = raisedAt{p: p, at: now}
		m.problems.WithLabelValues(string(p.Kind)).Inc()
		m.total.WithLabelValues(string(p.Kind)).Inc()
		m.log.Warn("spool problem", "spool", m.dir, "kind", p.Kind, "queue", p.Queue,
			"entry", p.Entry, "path", p.Path, "age", roundAge(p.Age), "detail", p.Detail)
	}
	for k := range m.seen {
		if current[k] {
			continue
		}
		delete(m.seen, k)
		if r, up := m.raised[k]; up {
			delete(m.raised, k)
			m.problems.WithLabelValues(string(r.p.Kind)).Dec()
			m.log.Info("spool problem ended", "spool", m.dir, "kind", r.p.Kind, "queue", r.p.Queue,
				"entry", r.p.Entry, "path", r.p.Path, "lasted", roundAge(now.Sub(r.at)))
		}
	}
}
