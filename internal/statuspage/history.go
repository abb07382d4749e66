package statuspage

import (
	"cmp"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	// step is the width of one bucket of a lag series, and buckets how
	// many a series holds: an hour.
	step    = time.Minute
	buckets = 60
)

// Sample is one target's lag at the moment of a Record call.
type Sample struct {
	DB     string
	Target string
	// Lag is the target's lag in seconds, as GET /status reports it.
	Lag float64
}

// History keeps each target's lag over the last hour, as the peak of each
// minute. It holds a series only for a target that lagged in that hour, so
// that thousands of databases that keep up cost nothing. Its methods are
// safe for concurrent use.
type History struct {
	mu sync.Mutex
	// end is the number of the newest bucket, counted in steps since the
	// Unix epoch, once begun is set by the first Record.
	end    int64
	begun  bool
	series map[seriesKey]*series
}

type seriesKey struct{ db, target string }

type series struct {
	// lag is a ring indexed by slot(bucket number). float32 halves the
	// memory and is precise enough for a chart.
	lag [buckets]float32
	// lagged is the newest bucket with a lag above zero: once it leaves
	// the window the series is all zero and goes.
	lagged int64
}

// NewHistory returns an empty History.
func NewHistory() *History {
	return &History{series: map[seriesKey]*series{}}
}

// Record adds samples taken at now. A bucket keeps the largest lag recorded
// in its minute, so that a spike between two page loads still shows.
// Calling Record every few seconds keeps the window moving: the window ends
// at the newest now seen.
func (h *History) Record(now time.Time, samples []Sample) {
	b := now.Unix() / int64(step/time.Second)
	if now.Unix()%int64(step/time.Second) < 0 {
		b-- // division truncates toward zero before 1970
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.begun {
		h.end, h.begun = b, true
	}
	h.advance(b)
	// A clock stepped back would otherwise write into a bucket the window
	// has already passed, or into the slot of a newer minute in the ring;
	// such samples count for the newest minute instead.
	b = h.end
	for _, s := range samples {
		// A NaN or infinite lag would make the JSON answer fail to
		// encode, losing every series; a negative one means nothing.
		if !(s.Lag > 0) || math.IsInf(s.Lag, 0) {
			continue
		}
		k := seriesKey{s.DB, s.Target}
		ser := h.series[k]
		if ser == nil {
			ser = &series{}
			h.series[k] = ser
		}
		v := &ser.lag[slot(b)]
		*v = max(*v, float32(s.Lag))
		ser.lagged = b
	}
}

// advance moves the window's end to bucket b, clearing the buckets it
// enters and dropping the series that no longer lagged in the window.
func (h *History) advance(b int64) {
	if b <= h.end {
		return
	}
	from := max(h.end+1, b-buckets+1)
	for k, ser := range h.series {
		if ser.lagged <= b-buckets {
			delete(h.series, k)
			continue
		}
		for i := from; i <= b; i++ {
			ser.lag[slot(i)] = 0
		}
	}
	h.end = b
}

// slot is where bucket b lives in a series' ring; b is negative for a
// time before 1970, where Go's % would be too.
func slot(b int64) int {
	return int((b%buckets + buckets) % buckets)
}

// lagHistory is what GET /status/lag-history answers.
type lagHistory struct {
	StepSeconds int `json:"step_seconds"`
	// End is when the newest bucket ends (zero before any Record), and
	// Lag[j] of a series is the peak from End-(60-j) to End-(59-j) steps.
	End    time.Time   `json:"end,omitzero"`
	Series []lagSeries `json:"series"`
}

// lagSeries is one target's lag over the window, oldest bucket first.
type lagSeries struct {
	DB     string    `json:"db"`
	Target string    `json:"target"`
	Lag    []float32 `json:"lag"`
}

func (h *History) snapshot() lagHistory {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := lagHistory{
		StepSeconds: int(step / time.Second),
		Series:      make([]lagSeries, 0, len(h.series)),
	}
	if h.begun {
		out.End = time.Unix((h.end+1)*int64(step/time.Second), 0).UTC()
	}
	for k, ser := range h.series {
		lag := make([]float32, buckets)
		for j := range lag {
			lag[j] = ser.lag[slot(h.end-buckets+1+int64(j))]
		}
		out.Series = append(out.Series, lagSeries{DB: k.db, Target: k.target, Lag: lag})
	}
	slices.SortFunc(out.Series, func(a, b lagSeries) int {
		return cmp.Or(cmp.Compare(a.DB, b.DB), cmp.Compare(a.Target, b.Target))
	})
	return out
}

// ServeHTTP answers GET and HEAD with the series History holds, as JSON
// (the package documentation shows its shape).
func (h *History) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := json.Marshal(h.snapshot())
	if err != nil {
		http.Error(w, "encode lag history: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}
