package statuspage

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// t0 starts a minute, so that t0.Add(n*time.Minute) is bucket n of a test.
var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(minute int, second int) time.Time {
	return t0.Add(time.Duration(minute)*time.Minute + time.Duration(second)*time.Second)
}

// lagOf returns the series of db and target from h, oldest bucket first,
// or nil when h holds none.
func lagOf(t *testing.T, h *History, db, target string) []float32 {
	t.Helper()
	for _, s := range h.snapshot().Series {
		if s.DB == db && s.Target == target {
			return s.Lag
		}
	}
	return nil
}

func TestHistoryKeepsPeakOfEachMinute(t *testing.T) {
	h := NewHistory()
	// A spike in the middle of the minute, then a recovery: the bucket
	// must show the spike, not the last sample.
	for i, lag := range []float64{1, 7.5, 3, 0, 0, 2} {
		h.Record(at(0, i*10), []Sample{{DB: "a.db", Target: "s3://b/a", Lag: lag}})
	}
	h.Record(at(1, 5), []Sample{{DB: "a.db", Target: "s3://b/a", Lag: 0.25}})
	h.Record(at(1, 40), []Sample{{DB: "a.db", Target: "s3://b/a", Lag: 0}})

	got := lagOf(t, h, "a.db", "s3://b/a")
	if len(got) != buckets {
		t.Fatalf("series has %d buckets, want %d", len(got), buckets)
	}
	if got[buckets-2] != 7.5 || got[buckets-1] != 0.25 {
		t.Errorf("last two buckets = %v, %v; want the peaks 7.5, 0.25", got[buckets-2], got[buckets-1])
	}
	for i, v := range got[:buckets-2] {
		if v != 0 {
			t.Errorf("bucket %d = %v before the first sample, want 0", i, v)
		}
	}
	snap := h.snapshot()
	if want := at(2, 0); !snap.End.Equal(want) {
		t.Errorf("end = %v, want the end of the newest minute %v", snap.End, want)
	}
	if snap.StepSeconds != 60 {
		t.Errorf("step_seconds = %d, want 60", snap.StepSeconds)
	}
}

func TestHistoryAllocatesOnlyForLag(t *testing.T) {
	h := NewHistory()
	samples := make([]Sample, 10000)
	for i := range samples {
		samples[i] = Sample{DB: fmt.Sprintf("/srv/%05d.db", i), Target: "s3://b/x"}
	}
	samples[42].Lag = 3
	for m := range 5 {
		h.Record(at(m, 0), samples)
	}
	if n := len(h.series); n != 1 {
		t.Fatalf("%d series after one target lagged, want 1", n)
	}
	// Lags the JSON encoder cannot write, or that mean nothing, must not
	// create a series either.
	h.Record(at(5, 0), []Sample{
		{DB: "nan", Lag: math.NaN()}, {DB: "inf", Lag: math.Inf(1)}, {DB: "neg", Lag: -1},
	})
	if n := len(h.series); n != 1 {
		t.Errorf("%d series after NaN, infinite and negative lags, want 1", n)
	}
}

func TestHistoryWindowExpires(t *testing.T) {
	h := NewHistory()
	h.Record(at(0, 30), []Sample{{DB: "a", Target: "x", Lag: 9}, {DB: "b", Target: "x", Lag: 4}})
	h.Record(at(30, 0), []Sample{{DB: "b", Target: "x", Lag: 5}})

	got := lagOf(t, h, "a", "x")
	if got == nil || got[buckets-31] != 9 {
		t.Fatalf("after 30 minutes a's series = %v, want 9 thirty buckets back", got)
	}

	// 59 minutes later the first sample is the oldest bucket; one more and
	// it has left the window.
	h.Record(at(59, 0), nil)
	if got := lagOf(t, h, "a", "x"); got == nil || got[0] != 9 {
		t.Fatalf("at minute 59 a's oldest bucket = %v, want 9", got)
	}
	h.Record(at(60, 0), nil)
	if got := lagOf(t, h, "a", "x"); got != nil {
		t.Errorf("a lagged only in minute 0, but at minute 60 it still has a series: %v", got)
	}
	got = lagOf(t, h, "b", "x")
	if got == nil || got[buckets-31] != 5 {
		t.Fatalf("b lagged at minute 30 and must keep it at minute 60; series = %v", got)
	}
	for i, v := range got {
		if i != buckets-31 && v != 0 {
			t.Errorf("b's bucket %d = %v, want 0: the lag of minute 0 left the window", i, v)
		}
	}

	// A pause longer than the window leaves nothing behind.
	h.Record(at(200, 0), nil)
	if n := len(h.series); n != 0 {
		t.Errorf("%d series after more than an hour without lag, want none", n)
	}
}

func TestHistoryRingSlotsReused(t *testing.T) {
	// A series that lags every minute for two hours must show the newest
	// hour only, in order: stale values from the ring's previous lap
	// would show as wrong peaks.
	h := NewHistory()
	for m := range 120 {
		h.Record(at(m, 0), []Sample{{DB: "a", Target: "x", Lag: float64(m + 1)}})
	}
	got := lagOf(t, h, "a", "x")
	for i, v := range got {
		if want := float32(61 + i); v != want {
			t.Fatalf("bucket %d = %v, want %v (series %v)", i, v, want, got)
		}
	}
	// A minute skipped must read zero, not the value from an hour ago.
	h.Record(at(121, 0), []Sample{{DB: "a", Target: "x", Lag: 1}})
	got = lagOf(t, h, "a", "x")
	if got[buckets-2] != 0 || got[buckets-1] != 1 {
		t.Errorf("after a skipped minute the last buckets are %v, want [0 1]", got[buckets-2:])
	}
}

func TestHistoryClockSteppedBack(t *testing.T) {
	h := NewHistory()
	h.Record(at(10, 0), []Sample{{DB: "a", Target: "x", Lag: 1}})
	// A clock stepped back must not write into the ring slot of another
	// minute, nor move the window back.
	h.Record(at(-20, 0), []Sample{{DB: "a", Target: "x", Lag: 6}})
	got := lagOf(t, h, "a", "x")
	if got[buckets-1] != 6 {
		t.Errorf("newest bucket = %v, want 6: samples from a clock stepped back count for the newest minute", got[buckets-1])
	}
	if end := h.snapshot().End; !end.Equal(at(11, 0)) {
		t.Errorf("end moved to %v after the clock stepped back, want %v", end, at(11, 0))
	}
}

func TestHistoryBeforeEpoch(t *testing.T) {
	// A zero time.Time is a caller's bug, but must not index the ring
	// with a negative number.
	h := NewHistory()
	h.Record(time.Time{}, []Sample{{DB: "a", Target: "x", Lag: 2}})
	h.Record(time.Time{}.Add(90*time.Second), []Sample{{DB: "a", Target: "x", Lag: 3}})
	got := lagOf(t, h, "a", "x")
	if got[buckets-2] != 2 || got[buckets-1] != 3 {
		t.Errorf("last buckets = %v, want [2 3]", got[buckets-2:])
	}
}

func TestHistoryServeHTTP(t *testing.T) {
	h := NewHistory()
	srv := httptest.NewServer(Handler(h))
	defer srv.Close()

	get := func() (lagHistory, *http.Response) {
		t.Helper()
		res, err := http.Get(srv.URL + "/status/lag-history")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out lagHistory
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatalf("decode lag history: %v", err)
		}
		return out, res
	}

	empty, res := get()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET lag history before any sample: %s, Content-Type %q", res.Status, res.Header.Get("Content-Type"))
	}
	if empty.Series == nil || len(empty.Series) != 0 || !empty.End.IsZero() {
		t.Errorf("before any sample: %+v, want an empty series list and no end", empty)
	}

	h.Record(at(0, 0), []Sample{
		{DB: "b.db", Target: "s3://x/b", Lag: 2},
		{DB: "a.db", Target: "s3://y/a", Lag: 1},
		{DB: "a.db", Target: "s3://x/a", Lag: 0.5},
		{DB: "c.db", Target: "s3://x/c", Lag: 0},
	})
	got, _ := get()
	var keys []string
	for _, s := range got.Series {
		keys = append(keys, s.DB+" "+s.Target)
		if len(s.Lag) != buckets {
			t.Errorf("%s %s has %d buckets, want %d", s.DB, s.Target, len(s.Lag), buckets)
		}
	}
	want := []string{"a.db s3://x/a", "a.db s3://y/a", "b.db s3://x/b"}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("series = %v, want %v (sorted, and none for a target that never lagged)", keys, want)
	}

	post, err := http.Post(srv.URL+"/status/lag-history", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST lag history: %s, want 405", post.Status)
	}
}

func TestHandlerRoutes(t *testing.T) {
	srv := httptest.NewServer(Handler(NewHistory()))
	defer srv.Close()
	for _, tc := range []struct {
		path, contentType string
		code              int
	}{
		{"/", "text/html; charset=utf-8", http.StatusOK},
		{"/ui/app.js", "text/javascript; charset=utf-8", http.StatusOK},
		{"/ui/style.css", "text/css; charset=utf-8", http.StatusOK},
		{"/ui/index.html", "", http.StatusNotFound},
		{"/ui/", "", http.StatusNotFound},
		{"/index.html", "", http.StatusNotFound},
		{"/status", "", http.StatusNotFound},
	} {
		res, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.code {
			t.Errorf("GET %s: %s, want %d", tc.path, res.Status, tc.code)
			continue
		}
		if tc.contentType != "" && res.Header.Get("Content-Type") != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, res.Header.Get("Content-Type"), tc.contentType)
		}
	}

	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if csp := res.Header.Get("Content-Security-Policy"); csp == "" {
		t.Error("GET / has no Content-Security-Policy; the page relies on it to refuse injected scripts")
	}

	// A browser that has the script revalidates it and gets 304.
	res, err = http.Get(srv.URL + "/ui/app.js")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/app.js", nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("GET /ui/app.js with its ETag: %s, want 304", res.Status)
	}
}

func TestHistoryConcurrent(t *testing.T) {
	h := NewHistory()
	handler := Handler(h)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				h.Record(at(i/10, i%10), []Sample{{DB: fmt.Sprint("db", w), Target: "x", Lag: float64(i % 7)}})
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 100 {
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status/lag-history", nil))
				if rec.Code != http.StatusOK {
					t.Errorf("GET lag history while recording: %d", rec.Code)
					return
				}
				var out lagHistory
				if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
					t.Errorf("decode lag history while recording: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(h.snapshot().Series); n != 4 {
		t.Errorf("%d series, want 4", n)
	}
}
