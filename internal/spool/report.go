package spool

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Report is the result of Check.
type Report struct {
	Dir      string       `json:"dir"`
	Time     time.Time    `json:"time"`
	Entries  int          `json:"entries"`
	Bytes    int64        `json:"bytes"`
	Queues   []QueueStats `json:"queues"`
	Problems []Problem    `json:"problems"`
}

// OK reports whether Check found no problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// QueueStats describes one queue as Check saw it.
type QueueStats struct {
	Name       string        `json:"name"`
	Entries    int           `json:"entries"`
	CheckedOut int           `json:"checked_out"`
	Bytes      int64         `json:"bytes"`
	Oldest     time.Duration `json:"-"` // age of the oldest readable entry
}

// Problem is one thing wrong in a spool.
type Problem struct {
	Kind   Kind          `json:"kind"`
	Queue  string        `json:"queue,omitempty"`
	Entry  ID            `json:"entry,omitempty"`
	Path   string        `json:"path"`
	Age    time.Duration `json:"-"`
	Detail string        `json:"detail"`
	// From is, for an entry of the failed queue, the queue it failed in.
	From string `json:"from,omitempty"`
}

// Key identifies a problem across runs of Check: its kind and path.
func (p Problem) Key() string { return string(p.Kind) + " " + p.Path }

// Durations go into JSON as seconds, which every consumer reads without
// knowing Go's nanosecond integers.

// MarshalJSON adds age_seconds.
func (p Problem) MarshalJSON() ([]byte, error) {
	type plain Problem
	return json.Marshal(struct {
		plain
		AgeSeconds float64 `json:"age_seconds"`
	}{plain(p), p.Age.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Problem) UnmarshalJSON(b []byte) error {
	type plain Problem
	var v struct {
		plain
		AgeSeconds float64 `json:"age_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Problem(v.plain)
	p.Age = secondsToDuration(v.AgeSeconds)
	return nil
}

// MarshalJSON adds oldest_seconds.
func (q QueueStats) MarshalJSON() ([]byte, error) {
	type plain QueueStats
	return json.Marshal(struct {
		plain
		OldestSeconds float64 `json:"oldest_seconds"`
	}{plain(q), q.Oldest.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (q *QueueStats) UnmarshalJSON(b []byte) error {
	type plain QueueStats
	var v struct {
		plain
		OldestSeconds float64 `json:"oldest_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*q = QueueStats(v.plain)
	q.Oldest = secondsToDuration(v.OldestSeconds)
	return nil
}

func secondsToDuration(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

// WriteText renders the report for a person: a summary, a line per queue,
// then a line per problem with its path on the next line.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "spool %s: %d entries, %s, checked %s\n", r.Dir, r.Entries, formatBytes(r.Bytes), r.Time.Format(time.RFC3339))
	if len(r.Queues) > 0 {
		fmt.Fprintf(tw, "  QUEUE\tENTRIES\tCHECKED OUT\tBYTES\tOLDEST\n")
		for _, q := range r.Queues {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\n", q.Name, q.Entries, q.CheckedOut, formatBytes(q.Bytes), roundAge(q.Oldest))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.OK() {
		_, err := fmt.Fprintln(w, "OK: no problems")
		return err
	}
	fmt.Fprintf(w, "%d problems:\n", len(r.Problems))
	for _, p := range r.Problems {
		where := p.Queue
		if p.Entry != "" {
			where += "/" + string(p.Entry)
		}
		if where == "" {
			where = "-"
		}
		fmt.Fprintf(w, "  %-10s %s age %s: %s\n      %s\n", p.Kind, where, roundAge(p.Age), p.Detail, p.Path)
	}
	return nil
}
