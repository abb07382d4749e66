package statuspage_test

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/statuspage"
	"github.com/ferrydb/ferry/internal/testenv"
)

var screenshot = flag.String("screenshot", "", "write a screenshot of the status page to this PNG `file`")

// chromium is Debian's package, which scripts/test installs.
const chromium = "/usr/bin/chromium"

// dbStatus is one database as the daemon's GET /status reports it: its
// capture.Status, its state (active, idle or failed), and each target's
// lag.
type dbStatus struct {
	capture.Status
	State string             `json:"state,omitempty"`
	Lag   map[string]float64 `json:"lag_seconds"`
}

type report struct {
	DBs []dbStatus `json:"dbs"`
}

// fakeDaemon serves GET /status from a report the test can change.
type fakeDaemon struct {
	mu  sync.Mutex
	rep report
}

func (d *fakeDaemon) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	body, err := json.Marshal(d.rep)
	d.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func (d *fakeDaemon) update(f func(*report)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&d.rep)
	for i := range d.rep.DBs {
		db := &d.rep.DBs[i]
		db.Lag = map[string]float64{}
		for _, t := range db.Targets {
			db.Lag[t.URL] = t.LagSeconds
		}
	}
}

const scriptPath = `/srv/t/<script>window.pwned=1</script>.db`

func dbPath(i int) string { return fmt.Sprintf("/srv/t/db-%04d.db", i) }

// fleet builds the status of n databases, with idle ones, lagging ones,
// failing, recovered and stopped targets, capture errors, one that failed,
// one without targets and one whose path and error are markup.
func fleet(n int, now time.Time) report {
	var rep report
	for i := range n {
		st := capture.Status{DB: dbPath(i), TXID: uint64(1000 + i), Time: now.Add(-time.Duration(i) * time.Second)}
		urls := []string{fmt.Sprintf("s3://bucket/p/db-%04d.db", i)}
		if i%10 == 0 {
			urls = append(urls, fmt.Sprintf("file:///backup/db-%04d.db", i))
		}
		if i == 60 {
			urls = nil
		}
		for j, u := range urls {
			t := capture.TargetStatus{URL: u, Replicated: st.TXID, Snapshot: 3, Synced: true}
			if i%7 == 3 && j == 0 {
				t.LagSeconds = float64(i)/10 + 0.25
			}
			switch {
			case i == 1234 && j == 0:
				t.LagSeconds = 4321.5
			case (i == 7 || i == 770 || i == 1500) && j == 0:
				t.LagSeconds = float64(600 + i)
				t.LastError = fmt.Sprintf("put %s/changes/%d: 503 SlowDown", u, st.TXID)
				t.LastErrorTime = now.Add(-time.Minute)
				t.FailingSince = now.Add(-5 * time.Minute)
			case i == 20 && j == 0:
				t.LastError = "put: connection reset by peer"
				t.LastErrorTime = now.Add(-time.Hour)
			case i == 30 && j == 1:
				t.Stopped = true
				t.LastError = "another writer replicates to this target"
				t.FailingSince = now.Add(-time.Hour)
			}
			if t.LagSeconds > 0 {
				t.Replicated -= 5
				t.WaitingSince = now.Add(-time.Duration(t.LagSeconds * float64(time.Second)))
			}
			st.Targets = append(st.Targets, t)
		}
		if i == 40 || i == 90 {
			st.LastError = "read WAL: disk I/O error"
			st.LastErrorTime = now.Add(-time.Minute)
			st.Errors = 3
		}
		if i%11 == 0 {
			st.SpoolBytes = int64(i) * 1024
			st.SpoolSegments = i / 11
		}
		// Idle means all shipped: a database with a lagging target is
		// active whatever its number.
		state := "active"
		if i%3 == 0 && !slices.ContainsFunc(st.Targets, func(t capture.TargetStatus) bool { return t.LagSeconds > 0 }) {
			state = "idle"
		}
		if i == 90 {
			state = "failed"
		}
		rep.DBs = append(rep.DBs, dbStatus{Status: st, State: state})
	}
	rep.DBs = append(rep.DBs, dbStatus{
		Status: capture.Status{DB: scriptPath, TXID: 9, Targets: []capture.TargetStatus{{
			URL: "s3://bucket/p/x", Replicated: 8, LagSeconds: 1.5,
			LastError: `<img src=x onerror="window.pwned=2">`, FailingSince: now,
		}}},
		State: "active",
	})
	return rep
}

// row is one row of the table, as the page should show it and as the
// test reads it back.
type row struct {
	DB     string `json:"db"`
	Target string `json:"target"`
	State  string `json:"state"`
	// Lag is the number behind the cell, empty for a row without a
	// target; Txid is the cell's text, "replicated / txid".
	Lag     string `json:"lag"`
	Txid    string `json:"txid"`
	Error   string `json:"error"`
	Spool   string `json:"spool"`
	Failing bool   `json:"failing"`
}

// expect lists the rows the page shows for rep, in the daemon's order.
func expect(rep report) []row {
	var rows []row
	for _, db := range rep.DBs {
		if len(db.Targets) == 0 {
			rows = append(rows, row{DB: db.DB, State: db.State, Txid: fmt.Sprintf("– / %d", db.TXID),
				Error: db.LastError, Spool: strconv.FormatInt(db.SpoolBytes, 10)})
		}
		for _, t := range db.Targets {
			r := row{
				DB: db.DB, Target: t.URL, State: db.State,
				Lag:     strconv.FormatFloat(t.LagSeconds, 'f', -1, 64),
				Txid:    fmt.Sprintf("%d / %d", t.Replicated, db.TXID),
				Error:   cmp.Or(t.LastError, db.LastError),
				Spool:   strconv.FormatInt(db.SpoolBytes, 10),
				Failing: !t.FailingSince.IsZero() || t.Stopped,
			}
			rows = append(rows, r)
		}
	}
	return rows
}

func lagOf(r row) float64 {
	v, _ := strconv.ParseFloat(r.Lag, 64)
	return v
}

const readRows = `[...document.querySelectorAll("#rows tr")].map((tr) => ({
	db: tr.dataset.db,
	target: tr.dataset.target,
	state: tr.querySelector("td.state").dataset.value,
	lag: tr.querySelector("td.lag").dataset.value,
	txid: tr.querySelector("td.txid").textContent,
	error: tr.querySelector("td.error").textContent,
	spool: tr.querySelector("td.spool").dataset.value,
	failing: tr.classList.contains("failing"),
}))`

type counts struct {
	Shown    string `json:"shown"`
	Matching string `json:"matching"`
	Total    string `json:"total"`
	Text     string `json:"text"`
}

const readCounts = `(() => { const s = document.getElementById("shown");
	return {shown: s.dataset.shown, matching: s.dataset.matching, total: s.dataset.total, text: s.textContent}; })()`

// browser starts Chromium headless in a fresh profile and returns a tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		testenv.Missing(t, "Chromium ("+chromium+", Debian's chromium package)")
	}
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		// Tests run as root, where Chromium refuses its sandbox.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// The machine has no network beyond loopback: nothing must try
		// to update, sync or reach Google in the background.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 900),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return ctx
}

func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls the page until the JavaScript condition holds.
func waitFor(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("wait until %s: %v", what, err)
	}
}

func filterRows(rows []row, sub string) []row {
	sub = strings.ToLower(sub)
	var out []row
	for _, r := range rows {
		if strings.Contains(strings.ToLower(r.DB), sub) || strings.Contains(strings.ToLower(r.Target), sub) {
			out = append(out, r)
		}
	}
	return out
}

func setFilter(t *testing.T, ctx context.Context, old, text string, want int) {
	t.Helper()
	do(t, ctx, "type in the filter",
		chromedp.SendKeys(chromedp.ID("filter"), strings.Repeat(kb.Backspace, len(old))+text))
	// The page filters a moment after the last key, so wait for the rows
	// of this filter, not for a count the previous one may have had too.
	waitFor(t, ctx, fmt.Sprintf("the filter %q matches %d rows", text, want),
		fmt.Sprintf(`(() => { const s = document.getElementById("shown").dataset;
			return s.filter === %s && s.matching === "%d"; })()`, jsString(strings.ToLower(text)), want))
}

func TestStatusPageInChromium(t *testing.T) {
	ctx := browser(t)
	var problems []string
	var mu sync.Mutex
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
				mu.Unlock()
			}
		}
	}()

	now := time.Now()
	daemon := &fakeDaemon{}
	daemon.update(func(r *report) { *r = fleet(2000, now) })
	hist := statuspage.NewHistory()
	s3 := func(i int) string { return fmt.Sprintf("s3://bucket/p/db-%04d.db", i) }
	hist.Record(now.Add(-40*time.Minute), []statuspage.Sample{
		{DB: dbPath(1234), Target: s3(1234), Lag: 100},
		{DB: dbPath(3), Target: s3(3), Lag: 50},
	})
	hist.Record(now.Add(-20*time.Minute), []statuspage.Sample{{DB: dbPath(1234), Target: s3(1234), Lag: 4321.5}})
	hist.Record(now, []statuspage.Sample{{DB: dbPath(3), Target: s3(3), Lag: 0.55}})

	mux := http.NewServeMux()
	mux.Handle("GET /status", daemon)
	mux.Handle("/", statuspage.Handler(hist))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	do(t, ctx, "load the page",
		chromedp.Navigate(srv.URL+"/?refresh=1"),
		chromedp.WaitVisible(chromedp.CSS("#rows tr")))

	want := expect(daemon.rep)
	got := run(t, ctx, "read the counts", chromedp.Evaluate[counts](readCounts))
	n := strconv.Itoa(len(want))
	wantText := fmt.Sprintf("showing 500 of %s,%s rows", n[:len(n)-3], n[len(n)-3:])
	if got.Total != n || got.Matching != n || got.Shown != "500" || got.Text != wantText {
		t.Fatalf("counts %+v; want 500 shown of %d rows, %q", got, len(want), wantText)
	}

	// Unsorted, the page keeps the daemon's order: every cell of the
	// first 500 rows is checked against the JSON.
	rows := run(t, ctx, "read the rows", chromedp.Evaluate[[]row](readRows))
	if diff := diffRows(rows, want[:500]); diff != "" {
		t.Fatalf("first 500 rows differ from the status: %s", diff)
	}

	t.Run("summary", func(t *testing.T) {
		var active, idle, failed, targets, failing int
		var maxLag float64
		for _, db := range daemon.rep.DBs {
			switch db.State {
			case "active":
				active++
			case "idle":
				idle++
			case "failed":
				failed++
			}
			for _, tg := range db.Targets {
				targets++
				if !tg.FailingSince.IsZero() || tg.Stopped {
					failing++
				}
				maxLag = max(maxLag, tg.LagSeconds)
			}
		}
		sum := run(t, ctx, "read the summary", chromedp.Evaluate[map[string]string](`Object.fromEntries(
			["dbs", "active", "idle", "failed", "targets", "failing", "maxlag"].map((k) => [k, document.getElementById("sum-" + k).dataset.value]))`))
		wantSum := map[string]string{
			"dbs": strconv.Itoa(len(daemon.rep.DBs)), "active": strconv.Itoa(active), "idle": strconv.Itoa(idle), "failed": strconv.Itoa(failed),
			"targets": strconv.Itoa(targets), "failing": strconv.Itoa(failing), "maxlag": strconv.FormatFloat(maxLag, 'f', -1, 64),
		}
		if fmt.Sprint(sum) != fmt.Sprint(wantSum) {
			t.Errorf("summary %v, want %v", sum, wantSum)
		}
		if failed != 1 || failing != 5 || maxLag != 4321.5 {
			t.Errorf("the fleet has %d failed databases, %d failing targets and max lag %v; the test expects 1, 5 and 4321.5",
				failed, failing, maxLag)
		}
	})

	t.Run("filter", func(t *testing.T) {
		// Upper case, to show that the filter ignores case.
		match := filterRows(want, "DB-077")
		setFilter(t, ctx, "", "DB-077", len(match))
		rows := run(t, ctx, "read the filtered rows", chromedp.Evaluate[[]row](readRows))
		if diff := diffRows(rows, match); diff != "" {
			t.Fatalf("rows for DB-077: %s", diff)
		}
		failing := slices.IndexFunc(rows, func(r row) bool { return r.DB == dbPath(770) && r.Failing })
		if failing < 0 || !strings.Contains(rows[failing].Error, "503 SlowDown") || rows[failing].Lag != "1370" {
			t.Errorf("db-0770's failing target is not shown with its error and lag: %+v", rows)
		}
		match = filterRows(want, "file:///backup/db-003")
		setFilter(t, ctx, "DB-077", "file:///backup/db-003", len(match))
		rows = run(t, ctx, "read the filtered rows", chromedp.Evaluate[[]row](readRows))
		if diff := diffRows(rows, match); diff != "" {
			t.Fatalf("rows for a target URL: %s", diff)
		}
		setFilter(t, ctx, "file:///backup/db-003", "", len(want))
	})

	t.Run("sort", func(t *testing.T) {
		byLag := slices.Clone(want)
		// A row without a target has no lag and goes last either way.
		noLag := func(r row) bool { return r.Lag == "" }
		slices.SortStableFunc(byLag, func(a, b row) int {
			if noLag(a) || noLag(b) {
				return cmp.Compare(boolInt(noLag(a)), boolInt(noLag(b)))
			}
			return cmp.Compare(lagOf(b), lagOf(a))
		})
		do(t, ctx, "sort by lag", chromedp.Click(chromedp.CSS(`th[data-key="lag"]`)))
		waitFor(t, ctx, "lag sorts descending", `document.querySelector('th[data-key="lag"]').getAttribute("aria-sort") === "descending"`)
		rows := run(t, ctx, "read the sorted rows", chromedp.Evaluate[[]row](readRows))
		if diff := diffRows(rows[:20], byLag[:20]); diff != "" {
			t.Errorf("first rows by lag, descending: %s", diff)
		}
		if rows[0].DB != dbPath(1234) {
			t.Errorf("largest lag shows %s first, want %s", rows[0].DB, dbPath(1234))
		}
		if *screenshot != "" {
			// The viewport, not the whole page: 500 rows make a picture
			// too tall to look at.
			png := run(t, ctx, "take a screenshot", chromedp.CaptureScreenshot())
			if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}

		slices.SortStableFunc(byLag, func(a, b row) int {
			if noLag(a) || noLag(b) {
				return cmp.Compare(boolInt(noLag(a)), boolInt(noLag(b)))
			}
			return cmp.Compare(lagOf(a), lagOf(b))
		})
		do(t, ctx, "sort by lag again", chromedp.Click(chromedp.CSS(`th[data-key="lag"]`)))
		waitFor(t, ctx, "lag sorts ascending", `document.querySelector('th[data-key="lag"]').getAttribute("aria-sort") === "ascending"`)
		rows = run(t, ctx, "read the sorted rows", chromedp.Evaluate[[]row](readRows))
		if diff := diffRows(rows[:20], byLag[:20]); diff != "" {
			t.Errorf("first rows by lag, ascending: %s", diff)
		}
		// Filtering a sorted table keeps the sort.
		match := filterRows(byLag, "db-000")
		setFilter(t, ctx, "", "db-000", len(match))
		rows = run(t, ctx, "read the sorted, filtered rows", chromedp.Evaluate[[]row](readRows))
		if diff := diffRows(rows, match); diff != "" {
			t.Errorf("rows for db-000 by lag, ascending: %s", diff)
		}
		setFilter(t, ctx, "db-000", "", len(want))
	})

	t.Run("sparkline", func(t *testing.T) {
		setFilter(t, ctx, "", "db-1234.db", 1)
		spark := run(t, ctx, "read the chart", chromedp.Evaluate[map[string]string](`(() => {
			const svg = document.querySelector("#rows tr td.history svg");
			return {class: svg.getAttribute("class"), peak: svg.dataset.peak || "",
				points: String(svg.querySelector("polyline").getAttribute("points").split(" ").length)};
		})()`))
		if spark["class"] != "spark" || spark["peak"] != "4321.5" || spark["points"] != "60" {
			t.Errorf("chart of db-1234 = %v; want a 60-point line peaking at 4321.5", spark)
		}
		setFilter(t, ctx, "db-1234.db", "db-0001.db", 1)
		flat := run(t, ctx, "read the chart", chromedp.Evaluate[string](
			`(() => { const td = document.querySelector("#rows tr td.history"); return td.className + " " + td.children.length; })()`))
		if flat != "history quiet 0" {
			t.Errorf("chart cell of a target that never lagged is %q, want the flat line of class quiet and no chart", flat)
		}
		setFilter(t, ctx, "db-0001.db", "", len(want))
	})

	t.Run("markup is text", func(t *testing.T) {
		setFilter(t, ctx, "", "<script>", 1)
		rows := run(t, ctx, "read the rows", chromedp.Evaluate[[]row](readRows))
		if diff := diffRows(rows, filterRows(want, "<script>")); diff != "" {
			t.Errorf("row with markup in its path and error: %s", diff)
		}
		text := run(t, ctx, "read the cell", chromedp.Evaluate[string](`document.querySelector("#rows td.db").textContent`))
		if text != scriptPath {
			t.Errorf("path cell shows %q, want %q", text, scriptPath)
		}
		pwned := run(t, ctx, "look for injected code", chromedp.Evaluate[string](
			`String(window.pwned) + " " + document.querySelectorAll("#rows img, #rows script").length`))
		if pwned != "undefined 0" {
			t.Errorf("markup from the status ran or became elements: window.pwned and element count = %s", pwned)
		}
		setFilter(t, ctx, "<script>", "", len(want))
	})

	t.Run("refresh", func(t *testing.T) {
		setFilter(t, ctx, "", "db-1234.db", 1)
		daemon.update(func(r *report) {
			tg := &r.DBs[1234].Targets[0]
			tg.LagSeconds = 7.25
			tg.Replicated = r.DBs[1234].TXID + 1
			r.DBs[1234].TXID++
			tg.LastError = "put: timeout"
			tg.FailingSince = now
		})
		waitFor(t, ctx, "the page shows the new lag", `document.querySelector("#rows td.lag").dataset.value === "7.25"`)
		rows := run(t, ctx, "read the rows", chromedp.Evaluate[[]row](readRows))
		if diff := diffRows(rows, filterRows(expect(daemon.rep), "db-1234.db")); diff != "" {
			t.Errorf("after the status changed: %s", diff)
		}
		kept := run(t, ctx, "read the filter and sort", chromedp.Evaluate[string](
			`document.getElementById("filter").value + " " + document.querySelector('th[data-key="lag"]').getAttribute("aria-sort")`))
		if kept != "db-1234.db ascending" {
			t.Errorf("after a refresh the filter and lag sort are %q, want them kept", kept)
		}
		maxLag := run(t, ctx, "read the max lag", chromedp.Evaluate[string](`document.getElementById("sum-maxlag").dataset.value`))
		if maxLag != "2100" { // db-1500's failing target, now the largest
			t.Errorf("max lag after db-1234 caught up = %s, want 2100", maxLag)
		}
	})

	problem := run(t, ctx, "read the problem banner", chromedp.Evaluate[string](`document.getElementById("problem").textContent`))
	if problem != "" {
		t.Errorf("the page reports a problem: %s", problem)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// diffRows describes the first difference between the rows the page shows
// and the rows it should show.
func diffRows(got, want []row) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d rows, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("row %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	return ""
}
