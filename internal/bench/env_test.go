package bench

import (
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// replicaStore opens a new bucket on srv as a replica store, the way the
// daemon opens one (every wrapper, metrics in a registry of its own),
// wrapped once more to count calls by the kind of object they touch.
func replicaStore(tb testing.TB, srv testenv.S3Server) (url string, s *countingStore, reg *prometheus.Registry) {
	tb.Helper()
	return openStore(tb, srv, testenv.Bucket(tb, srv))
}

// bucketStore opens an existing bucket on srv.
func bucketStore(tb testing.TB, srv testenv.S3Server, bucket string) objstore.Store {
	tb.Helper()
	_, s, _ := openStore(tb, srv, bucket)
	return s.next
}

func openStore(tb testing.TB, srv testenv.S3Server, bucket string) (url string, s *countingStore, reg *prometheus.Registry) {
	tb.Helper()
	url = fmt.Sprintf("s3://%s/bench?endpoint=%s&region=%s&force-path-style=true", bucket, srv.Endpoint, srv.Region)
	t, err := config.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	reg = prometheus.NewRegistry()
	store, err := target.Open(context.Background(), config.Replica{
		Target:          t,
		AccessKeyID:     config.NewSecret(srv.AccessKey),
		SecretAccessKey: config.NewSecret(srv.SecretKey),
	}, target.Options{Metrics: objstore.NewMetrics(reg), Check: true})
	if err != nil {
		tb.Fatal(err)
	}
	return url, &countingStore{next: store, n: map[callKind]*callCount{}}, reg
}

// storeRequests sums ferry_objstore_requests_total over every operation.
func storeRequests(tb testing.TB, reg *prometheus.Registry) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "ferry_objstore_requests_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// callKind is an operation on one kind of object: chunks, snapshots
// (manifests), segments, or other.
type callKind struct{ kind, op string }

type callCount struct {
	calls    int64
	putBytes int64
}

// countingStore counts the calls made through it. Retries happen below it
// and are not counted here (the metrics count them).
type countingStore struct {
	next objstore.Store
	mu   sync.Mutex
	n    map[callKind]*callCount
}

func kindOf(key string) string {
	if i := strings.IndexByte(key, '/'); i > 0 {
		return key[:i]
	}
	return "other"
}

func (s *countingStore) add(key, op string, putBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := callKind{kindOf(key), op}
	c := s.n[k]
	if c == nil {
		c = &callCount{}
		s.n[k] = c
	}
	c.calls++
	c.putBytes += putBytes
}

// counts returns a copy of the counters.
func (s *countingStore) counts() map[callKind]callCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[callKind]callCount{}
	for k, c := range s.n {
		out[k] = *c
	}
	return out
}

// usage is the calls and bytes put between two counts, for the kinds
// given (every kind when none is).
type usage struct {
	calls    int64
	putBytes int64
	byOp     map[string]int64
}

func since(before, after map[callKind]callCount, kinds ...string) usage {
	u := usage{byOp: map[string]int64{}}
	for k, c := range after {
		if len(kinds) > 0 && !slices.Contains(kinds, k.kind) {
			continue
		}
		d := c.calls - before[k].calls
		u.calls += d
		u.putBytes += c.putBytes - before[k].putBytes
		if d > 0 {
			u.byOp[k.kind+"/"+k.op] += d
		}
	}
	return u
}

func (s *countingStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	info, err := s.next.Put(ctx, key, body, opts)
	var n int64
	if err == nil {
		n = info.Size
	}
	s.add(key, "put", n)
	return info, err
}

func (s *countingStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	s.add(key, "get", 0)
	return s.next.Get(ctx, key, rng)
}

func (s *countingStore) Head(ctx context.Context, key string) (objstore.Info, error) {
	s.add(key, "head", 0)
	return s.next.Head(ctx, key)
}

func (s *countingStore) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	s.add(prefix, "list", 0)
	return s.next.List(ctx, prefix)
}

func (s *countingStore) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		s.add(k, "delete", 0)
	}
	return s.next.Delete(ctx, keys...)
}

// replica is a Replicator running in the benchmark process on one
// versitygw bucket.
type replica struct {
	*capture.Replicator
	store  *countingStore
	reg    *prometheus.Registry
	url    string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns, with its error in err
	err    error
}

// startReplica opens dbPath for replication to a new bucket on srv and
// runs it until the benchmark ends. It returns once the initial snapshot
// is stored.
func startReplica(tb testing.TB, srv testenv.S3Server, dbPath string, o capture.Options) *replica {
	tb.Helper()
	rp := runReplica(tb, srv, dbPath, o)
	tb.Cleanup(func() {
		if err := rp.stop(); err != nil {
			tb.Error(err)
		}
	})
	rp.waitSnapshot(tb)
	return rp
}

// waitSnapshot waits for the initial snapshot.
func (r *replica) waitSnapshot(tb testing.TB) {
	tb.Helper()
	r.waitFor(tb, "the initial snapshot", 30*time.Minute, func(st capture.Status) bool {
		return st.Targets[0].Snapshot > 0 && st.Targets[0].Replicated >= st.TXID
	})
}

// runReplica opens dbPath for replication to a new bucket on srv and runs
// it until stop.
func runReplica(tb testing.TB, srv testenv.S3Server, dbPath string, o capture.Options) *replica {
	tb.Helper()
	url, store, reg := replicaStore(tb, srv)
	o.DBPath = dbPath
	o.SpoolDir = filepath.Join(filepath.Dir(dbPath), "spool-"+filepath.Base(dbPath))
	o.Targets = map[string]objstore.Store{url: store}
	if os.Getenv("FERRY_BENCH_LOG") != "" {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := capture.Open(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &replica{Replicator: r, store: store, reg: reg, url: url, cancel: cancel, done: make(chan struct{})}
	go func() {
		rp.err = r.Run(ctx)
		close(rp.done)
	}()
	return rp
}

// stop ends the Replicator and waits for it to close.
func (r *replica) stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	<-r.done
	return r.err
}

// waitFor polls Status until ok says yes, failing the benchmark after
// limit.
func (r *replica) waitFor(tb testing.TB, what string, limit time.Duration, ok func(capture.Status) bool) capture.Status {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := r.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not happen within %s; status %+v", what, limit, st)
		}
		select {
		case <-r.done:
			tb.Fatalf("waiting for %s: the replicator stopped: %v; status %+v", what, r.err, st)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// s3Server returns the real S3 server; benchmarks need one.
func s3Server(tb testing.TB) testenv.S3Server {
	tb.Helper()
	return testenv.S3(tb)
}

// percentile returns the p-th percentile (0..100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
