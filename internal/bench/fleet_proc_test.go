package bench

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/testenv"
)

// child is a replicator running as a process of its own, as it runs in
// production, so that what it costs is measured apart from the
// benchmark: its memory, descriptors, threads and CPU time from /proc.
type child struct {
	name    string
	cmd     *exec.Cmd
	out     testenv.LogBuffer
	started time.Time
	done    chan struct{}
	err     error
	stopped bool
	watch   *procWatch
	// sig is what stops it; SIGTERM unless set.
	sig os.Signal
}

// startChild runs args[0] with the rest as its arguments and env as its
// environment, until stop or the end of the benchmark.
func startChild(b *testing.B, name string, env []string, args ...string) *child {
	b.Helper()
	c := &child{name: name, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	c.cmd.Env = env
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	c.watch = watchProc(c.cmd.Process.Pid)
	b.Cleanup(func() {
		if !c.stopped {
			c.cmd.Process.Kill()
			<-c.done
		}
		c.watch.stop()
		c.complaints(b)
	})
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// alive ends the benchmark if the child has exited.
func (c *child) alive(b *testing.B) {
	b.Helper()
	select {
	case <-c.done:
		if !c.stopped {
			b.Fatalf("%s exited by itself: %v\n%s", c.name, c.err, c.tail(40))
		}
	default:
	}
}

// stop ends the child as a service manager would, and returns how long
// it took to exit.
func (c *child) stop(b *testing.B) time.Duration {
	b.Helper()
	c.alive(b)
	c.stopped = true
	start := time.Now()
	sig := c.sig
	if sig == nil {
		sig = syscall.SIGTERM
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(2 * time.Minute):
		c.cmd.Process.Kill()
		<-c.done
		b.Fatalf("%s did not stop within 2 minutes of SIGTERM\n%s", c.name, c.tail(40))
	}
	if c.err != nil {
		b.Fatalf("%s exited with %v after SIGTERM\n%s", c.name, c.err, c.tail(40))
	}
	return time.Since(start)
}

// tail returns the last n lines the child wrote.
func (c *child) tail(n int) string {
	lines := strings.Split(strings.TrimSpace(c.out.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// complaints logs what the child warned of: a replicator that fell
// behind or failed makes its figures look better or worse than it is.
func (c *child) complaints(b *testing.B) {
	k := 0
	for line := range strings.Lines(c.out.String()) {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			if k++; k <= 20 {
				b.Logf("%s: %s", c.name, strings.TrimSpace(line))
			}
		}
	}
	if k > 20 {
		b.Logf("%s: and %d more warnings", c.name, k-20)
	}
}

// procPeak is the highest of each figure seen.
type procPeak struct {
	rssMB   float64
	fds     int
	threads int
}

// procWatch samples a process's resident set, descriptors and threads
// every 500 ms and keeps the peaks since the last reset, and the last
// sample.
type procWatch struct {
	pid  int
	mu   sync.Mutex
	max  procPeak
	last procPeak
	quit chan struct{}
	done chan struct{}
}

func watchProc(pid int) *procWatch {
	w := &procWatch{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			w.sample()
			select {
			case <-w.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *procWatch) sample() {
	s, ok := procSample(w.pid)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = s
	w.max.rssMB = max(w.max.rssMB, s.rssMB)
	w.max.fds = max(w.max.fds, s.fds)
	w.max.threads = max(w.max.threads, s.threads)
}

// reset starts a new phase: the peaks start again from the next sample,
// taken now.
func (w *procWatch) reset() {
	w.mu.Lock()
	w.max = procPeak{}
	w.mu.Unlock()
	w.sample()
}

func (w *procWatch) peak() procPeak {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max
}

// now samples the process and returns what it found.
func (w *procWatch) now() procPeak {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *procWatch) stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}

// procSample reads a process's VmRSS and thread count from
// /proc/PID/status and counts /proc/PID/fd.
func procSample(pid int) (procPeak, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	data, err := os.ReadFile(dir + "/status")
	if err != nil {
		return procPeak{}, false
	}
	var s procPeak
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		switch k {
		case "VmRSS":
			s.rssMB = float64(n) / 1024
		case "Threads":
			s.threads = n
		}
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return procPeak{}, false
	}
	s.fds = len(fds)
	return s, true
}

// childCPU returns the user and system time a process has used, from
// /proc/PID/stat.
func childCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: the fields are
	// counted from after its closing parenthesis, where field 3 (state)
	// begins. utime and stime are fields 14 and 15.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	// In clock ticks of USER_HZ, which Linux fixes at 100 for user space
	// on every architecture Go runs on.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// requestCounter is a reverse proxy in front of the S3 server that
// counts the requests through it, by method and area, and notes when the server
// acknowledged each change set and snapshot manifest of a database.
type requestCounter struct {
	*httptest.Server
	mu     sync.Mutex
	n      map[string]int64
	stored map[string][]storedPut // by the database's name
}

// storedPut is a change set (first txid, snapshot false) or manifest
// (txid, snapshot true) the server acknowledged at at.
type storedPut struct {
	txid     uint64
	snapshot bool
	at       time.Time
}

func newRequestCounter(b *testing.B, upstream string) *requestCounter {
	b.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		b.Fatal(err)
	}
	p := &requestCounter{n: map[string]int64{}, stored: map[string][]storedPut{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, where := r.Method, r.URL.Path
		if r.Method == http.MethodGet && r.URL.Query().Has("list-type") {
			kind, where = "LIST", r.URL.Query().Get("prefix")
		}
		kind += " " + area(where)
		p.mu.Lock()
		p.n[kind]++
		p.mu.Unlock()
		if r.Method != http.MethodPut {
			rp.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		if sw.status/100 == 2 {
			p.put(r.URL.Path, time.Now())
		}
	}))
	b.Cleanup(p.Close)
	return p
}

// area is the directory of a database's replica that a key or listing
// prefix is in (segments, snapshots, chunks, gc...), so that the counts
// say what the requests were for: the first path element after the one
// that names the database.
func area(key string) string {
	parts := strings.Split(strings.Trim(key, "/"), "/")
	for i, p := range parts {
		if strings.HasSuffix(p, ".db") && i+1 < len(parts) {
			return parts[i+1]
		}
	}
	return "-"
}

// put notes an acknowledged PUT of the object at the path-style path
// /BUCKET/PREFIX/DB/KEY, when KEY names a change set or a manifest.
func (p *requestCounter) put(objPath string, at time.Time) {
	dir, file := path.Split(objPath)
	dbDir, sub := path.Split(strings.TrimSuffix(dir, "/"))
	key := sub + "/" + file
	sp := storedPut{at: at}
	if first, err := layout.ParseChangeSetKey(key); err == nil {
		sp.txid = first
	} else if txid, err := layout.ParseManifestKey(key); err == nil {
		sp.txid, sp.snapshot = txid, true
	} else {
		return
	}
	db := path.Base(dbDir)
	p.mu.Lock()
	p.stored[db] = append(p.stored[db], sp)
	p.mu.Unlock()
}

// storedOf returns what the server acknowledged of the database named
// db, in the order it did.
func (p *requestCounter) storedOf(db string) []storedPut {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.stored[db])
}

func (p *requestCounter) counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.n))
	for k, v := range p.n {
		out[k] = v
	}
	return out
}

// since returns the counts that grew from before, by how much.
func (p *requestCounter) since(before map[string]int64) map[string]int64 {
	by := map[string]int64{}
	for k, v := range p.counts() {
		if d := v - before[k]; d > 0 {
			by[k] = d
		}
	}
	return by
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
