package spool

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a prometheus.Collector of the spool's size, read at
// each scrape: ferry_spool_bytes, ferry_spool_max_bytes and
// ferry_spool_entries{queue}, labelled with the spool's directory so that
// the spools of several databases share a registry.
func (s *Spool) Collector() prometheus.Collector {
	labels := prometheus.Labels{"spool": s.dir}
	return &collector{
		s:       s,
		bytes:   prometheus.NewDesc("ferry_spool_bytes", "Entry data held in the spool, in bytes.", nil, labels),
		max:     prometheus.NewDesc("ferry_spool_max_bytes", "Bound on the spool's entry data, in bytes; 0 when unbounded.", nil, labels),
		entries: prometheus.NewDesc("ferry_spool_entries", "Entries in a spool queue, checked out ones included.", []string{"queue"}, labels),
	}
}

type collector struct {
	s                   *Spool
	bytes, max, entries *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.max
	ch <- c.entries
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	bytes := s.bytes
	lens := make(map[string]int, len(s.queues))
	for name, q := range s.queues {
		lens[name] = q.len()
	}
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(s.opts.MaxBytes))
	for name, n := range lens {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(n), name)
	}
}
