package capture

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	replicatarget "github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// writerRun is one run of the writer child.
type writerRun struct {
	db       string
	n        int // the workload's length: the writer stops at commit n
	seed     uint64
	samples  []int
	resume   bool
	appCkpts bool
	// completed, when set, gets the application's checkpoints that
	// completed, by mode.
	completed map[string]int
}

// run runs the writer child to the end and returns the hashes it
// recorded, by commit.
func (w writerRun) run(t *testing.T) map[int]string {
	t.Helper()
	var ks []string
	for _, k := range w.samples {
		ks = append(ks, strconv.Itoa(k))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=writer", envDB+"="+w.db, envN+"="+strconv.Itoa(w.n),
		envSeed+"="+strconv.FormatUint(w.seed, 10), envSamples+"="+strings.Join(ks, ","))
	if w.resume {
		cmd.Env = append(cmd.Env, envResume+"=1")
	}
	if w.appCkpts {
		cmd.Env = append(cmd.Env, envCkpt+"=1")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("writer: %v: %s", err, stderr.String())
	}
	hashes := map[int]string{}
	ckpts := map[string]int{}
	done := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "hash":
			k, _ := strconv.Atoi(f[1])
			hashes[k] = f[2]
		case len(f) == 5 && f[0] == "checkpoint":
			if f[2] == "0" {
				ckpts[f[1]]++
			}
		case len(f) == 1 && f[0] == "done":
			done = true
		}
	}
	if !done {
		t.Fatalf("writer did not finish: %s", out)
	}
	if w.appCkpts {
		t.Logf("application checkpoints that completed, by mode: %v", ckpts)
		if w.completed != nil {
			maps.Copy(w.completed, ckpts)
		}
	}
	return hashes
}

// pickSamples picks count commits in (from, to], always with to, never the
// vacuum commit (whose state carries the number before it).
func pickSamples(rng *rand.Rand, from, to, count, vacuum int) []int {
	set := map[int]bool{to: true}
	for len(set) < count && len(set) < to-from-1 {
		if k := from + 1 + rng.IntN(to-from); k != vacuum {
			set[k] = true
		}
	}
	out := make([]int, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkSamples restores, from store, the txid of every sampled commit and
// compares its content hash with the one the writer recorded. Two
// restores run at once.
func checkSamples(t *testing.T, store objstore.Store, dir string, base, last uint64, hashes map[int]string, ks []int) {
	t.Helper()
	var (
		mu      sync.Mutex
		errs    []error
		checked int
		wg      sync.WaitGroup
	)
	ch := make(chan int)
	for range 2 {
		wg.Go(func() {
			for k := range ch {
				err := checkSample(store, dir, base, last, hashes[k], k)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					checked++
				}
				mu.Unlock()
			}
		})
	}
	for _, k := range ks {
		ch <- k
	}
	close(ch)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d sampled commits restored exactly (and passed integrity_check)", checked)
}

func checkSample(store objstore.Store, dir string, base, last uint64, want string, k int) error {
	path, txid, err := findCommit(store, dir, k, base+uint64(k), last)
	if err != nil {
		return fmt.Errorf("commit %d: %w", k, err)
	}
	if path == "" {
		return fmt.Errorf("commit %d: no txid restores it", k)
	}
	defer os.Remove(path)
	got, err := cli(path, ".sha3sum")
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("commit %d (txid %d): restored hash %s, the writer recorded %s", k, txid, got, want)
	}
	return nil
}

// checkLatest restores the newest state from store and compares it with
// the database now.
func checkLatest(t *testing.T, store objstore.Store, dir string, want string, wantK int, wantTXID uint64) {
	t.Helper()
	out, res := restoreAt(t, store, 0, dir)
	if got := sha3(t, out); got != want {
		t.Fatalf("latest restore (txid %d): hash %s, want %s", res.TXID, got, want)
	}
	if k := marker(t, out); k != wantK {
		t.Fatalf("latest restore (txid %d) is commit %d, want %d", res.TXID, k, wantK)
	}
	if wantTXID != 0 && res.TXID != wantTXID {
		t.Fatalf("latest restore is txid %d, Sync said %d", res.TXID, wantTXID)
	}
	os.Remove(out)
}

func snapshotCount(t *testing.T, store objstore.Store) int {
	cat, err := restore.ReadCatalog(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	return len(cat.Snapshots)
}

func oracleOptions(dir, db string, targets map[string]objstore.Store) Options {
	o := testOptions(dir, db, targets)
	o.SyncInterval = 100 * time.Millisecond
	o.SnapshotInterval = 300 * time.Millisecond
	o.CheckpointPages = 200
	o.TruncatePages = 800
	o.PollInterval = 20 * time.Millisecond
	// Small change sets, so that a restore to a txid decodes little past
	// it.
	o.batchBytes = 1 << 20
	return o
}

// TestOracle has a separate process write thousands of random
// transactions (inserts, updates, deletes, a schema change, a VACUUM, a
// dropped table, blobs spanning several chunks) while ferry replicates to
// a memory and a file target, then restores sampled txids and the latest
// and compares each with the sqlite3 shell's hash of the live database at
// that commit.
func TestOracle(t *testing.T) {
	needCLI(t)
	n, samples := 2000, 51
	if testing.Short() {
		n, samples = 400, 15
	}
	dir := t.TempDir()
	fs, err := filestore.New(filepath.Join(dir, "replica"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	mem := memstore.New()
	runOracle(t, dir, map[string]objstore.Store{"mem://oracle": mem, "file://oracle": fs}, mem, n, samples)
}

// TestOracleS3 is TestOracle, smaller, against a real S3 server.
func TestOracleS3(t *testing.T) {
	needCLI(t)
	srv := testenv.S3(t)
	bucket := testenv.Bucket(t, srv)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	url := fmt.Sprintf("s3://%s/oracle?endpoint=%s&region=%s&force-path-style=true", bucket, srv.Endpoint, srv.Region)
	store, err := replicatarget.OpenURL(context.Background(), url, replicatarget.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runOracle(t, t.TempDir(), map[string]objstore.Store{url: store}, store, 300, 12)
}

func runOracle(t *testing.T, dir string, targets map[string]objstore.Store, primary objstore.Store, n, count int) {
	db := newDB(t, dir, 4096, appSchema...)
	start := time.Now()
	r := startReplicator(t, oracleOptions(dir, db, targets))
	base := r.sync(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	w := writerRun{db: db, n: n, seed: seed, samples: pickSamples(rng, 0, n, count, n/2)}
	hashes := w.run(t)
	last := r.sync(t)
	t.Logf("%d commits replicated in %v; txids %d..%d", n, time.Since(start).Round(time.Millisecond), base, last)
	st := r.Status()
	if len(st.Gaps) > 0 {
		t.Errorf("gaps: %+v", st.Gaps)
	}
	for url, store := range targets {
		checkLatest(t, store, dir, hashes[n], n, last)
		t.Logf("%s: %d snapshots", url, snapshotCount(t, store))
	}
	checkSamples(t, primary, dir, base, last, hashes, w.samples)
}
