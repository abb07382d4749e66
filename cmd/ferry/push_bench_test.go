package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/testenv"
)

// BenchmarkPushSmallFiles measures `ferry push -wait` of a directory of
// 10,000 files of 4 KiB (FERRY_BENCH_PUSH_FILES changes the count) to
// versitygw, run as a child process the way a person runs it: from the
// command's start to its exit, with every file spooled (durably), uploaded,
// confirmed and removed from the spool. Each round also PUTs the same
// files straight from disk with the objstore S3 store, as many at once as
// the push's uploader sends (pushWorkers), into a bucket of their own: the
// server's rate on this machine at that moment. ratio is ferry's rate over
// that one; the two alternate which goes first.
//
// cpu-ms/file is the CPU time (user and system) of the ferry process per
// file, raw-cpu-ms/file that of this process while it PUTs the files
// itself: the two clients' costs, apart from the server's.
//
// After the timed rounds, one untimed push of the same files runs under
// strace (when on PATH), counting the system calls and the fsyncs of the
// ferry process, and through a proxy that counts the requests it sends.
func BenchmarkPushSmallFiles(b *testing.B) {
	srv := testenv.S3(b)
	bin := ferryBinary(b)
	src := filepath.Join(b.TempDir(), "src")
	keys := smallFiles(b, src, "FERRY_BENCH_PUSH_FILES")
	n := len(keys)
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)

	var ferryTime, rawTime, ferryCPU, rawCPU time.Duration
	round := 0
	for b.Loop() {
		round++
		var f, r benchRun
		if round%2 == 1 {
			r = benchRawPuts(b, srv, src, keys)
			f = benchPush(b, bin, env, srv, srv.Endpoint, src, n, nil)
		} else {
			f = benchPush(b, bin, env, srv, srv.Endpoint, src, n, nil)
			r = benchRawPuts(b, srv, src, keys)
		}
		ferryTime += f.took
		rawTime += r.took
		ferryCPU += f.cpu
		rawCPU += r.cpu
		b.Logf("round %d: ferry push %.0f files/s (%.3f CPU ms/file), raw PUTs %.0f files/s (%.3f CPU ms/file), ratio %.2f",
			round, float64(n)/f.took.Seconds(), perFileMs(f.cpu, n), float64(n)/r.took.Seconds(), perFileMs(r.cpu, n),
			r.took.Seconds()/f.took.Seconds())
	}
	b.StopTimer()
	b.ReportMetric(float64(n*round)/ferryTime.Seconds(), "files/s")
	b.ReportMetric(float64(n*round)/rawTime.Seconds(), "raw-files/s")
	b.ReportMetric(rawTime.Seconds()/ferryTime.Seconds(), "ratio")
	b.ReportMetric(perFileMs(ferryCPU, n*round), "cpu-ms/file")
	b.ReportMetric(perFileMs(rawCPU, n*round), "raw-cpu-ms/file")

	// The counting run: requests through a proxy, fsyncs through strace.
	var reqs, puts, heads atomic.Int64
	upstream, err := url.Parse(srv.Endpoint)
	if err != nil {
		b.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		switch r.Method {
		case http.MethodPut:
			puts.Add(1)
		case http.MethodHead:
			heads.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	var syscalls map[string]int64
	benchPush(b, bin, env, srv, front.URL, src, n, &syscalls)
	b.ReportMetric(float64(reqs.Load())/float64(n), "requests/file")
	b.ReportMetric(float64(puts.Load())/float64(n), "PUTs/file")
	b.ReportMetric(float64(heads.Load())/float64(n), "HEADs/file")
	if syscalls != nil {
		b.ReportMetric(float64(syscalls["fsync"]+syscalls["fdatasync"]+syscalls["syncfs"])/float64(n), "fsyncs/file")
		b.ReportMetric(float64(syscalls["total"])/float64(n), "syscalls/file")
	}
}

// smallFiles writes 10,000 files of 4 KiB of distinct bytes (or as many
// as the environment variable count says) into the new directory src,
// and returns their names.
func smallFiles(b *testing.B, src, count string) []string {
	b.Helper()
	n := 10000
	if v := os.Getenv(count); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive count", count, v)
		}
	}
	if err := os.Mkdir(src, 0o755); err != nil {
		b.Fatal(err)
	}
	const size = 4 << 10
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("f%05d", i)
		data := bytes.Repeat(fmt.Appendf(nil, "%08d", i), size/8)
		if err := os.WriteFile(filepath.Join(src, keys[i]), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return keys
}

// benchRun is how long one round's push or PUTs took, and the CPU time
// of the client that made them.
type benchRun struct{ took, cpu time.Duration }

func perFileMs(d time.Duration, n int) float64 { return d.Seconds() * 1000 / float64(n) }

// benchPush runs ferry push -wait of src into a new bucket through
// endpoint and a new spool, checks that the bucket then holds n objects,
// and returns how long the command took and the CPU time it used. With
// syscalls, it runs under strace and fills in how many system calls of
// each kind it made, and their total.
func benchPush(b *testing.B, bin string, env []string, srv testenv.S3Server, endpoint, src string, n int, syscalls *map[string]int64) benchRun {
	b.Helper()
	bucket := testenv.Bucket(b, srv)
	u := fmt.Sprintf("s3://%s/push?endpoint=%s&region=us-east-1&force-path-style=true", bucket, endpoint)
	args := []string{bin, "push", "-wait", "-spool", filepath.Join(b.TempDir(), "spool"), src, u}
	var trace string
	if syscalls != nil {
		if path, err := exec.LookPath("strace"); err == nil {
			trace = filepath.Join(b.TempDir(), "strace")
			args = append([]string{path, "-f", "-c", "-o", trace}, args...)
		} else {
			b.Log("strace is not on PATH: fsyncs are not counted")
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("ferry push: %v: %s", err, stderr.String())
	}
	took := time.Since(start)
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if got := countObjects(b, srv, bucket, "push/"); got != n {
		b.Fatalf("bucket holds %d objects after the push, want %d", got, n)
	}
	if trace != "" {
		*syscalls = straceCounts(b, trace)
	}
	return benchRun{took, cpu}
}

// selfCPU is the CPU time this process has used so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRawPuts PUTs each file of src under its key into a new bucket
// with s3store, pushWorkers at a time, and returns how long it took and
// the CPU time this process used meanwhile.
func benchRawPuts(b *testing.B, srv testenv.S3Server, src string, keys []string) benchRun {
	b.Helper()
	bucket := testenv.Bucket(b, srv)
	store := rawStore(b, srv, bucket)
	work := make(chan string)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	start, cpu0 := time.Now(), selfCPU(b)
	for range pushWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range work {
				err := putFile(store, filepath.Join(src, key), "raw/"+key)
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	took, cpu := time.Since(start), selfCPU(b)-cpu0
	if first != nil {
		b.Fatal(first)
	}
	return benchRun{took, cpu}
}

func putFile(store objstore.Store, path, key string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = store.Put(context.Background(), key, f, objstore.PutOptions{})
	return err
}

func rawStore(b *testing.B, srv testenv.S3Server, bucket string) *s3store.Store {
	b.Helper()
	s, err := s3store.New(context.Background(), s3store.Config{
		Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func countObjects(b *testing.B, srv testenv.S3Server, bucket, prefix string) int {
	b.Helper()
	n := 0
	for _, err := range rawStore(b, srv, bucket).List(context.Background(), prefix) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	return n
}

// straceCounts reads the table of strace -c: calls per system call.
func straceCounts(b *testing.B, path string) map[string]int64 {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// % time  seconds  usecs/call  calls  [errors]  syscall
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[0] == "%" || strings.HasPrefix(fields[0], "-") {
			continue
		}
		if calls, err := strconv.ParseInt(fields[3], 10, 64); err == nil {
			counts[fields[len(fields)-1]] = calls
		}
	}
	return counts
}
