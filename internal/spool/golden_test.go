package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from today's writer")

// goldenDir is a spool as today's code leaves it on disk, minus what git
// cannot keep (empty directories, modes) and LOCK. A spool outlives the
// ferry that wrote it: after an upgrade the new daemon opens the old
// spool and must hand out every entry as it was, and a `ferry push` of one
// version hands entries to a daemon of another through incoming/.
var goldenDir = filepath.Join("testdata", "v1")

// goldenT0 is the spool clock when the golden spool was written; its
// nanoseconds pin the precision of the times in entry IDs and meta.json.
var goldenT0 = time.Date(2025, 3, 1, 12, 0, 0, 7, time.UTC)

// goldenJob mirrors the uploader's payload, which the spool stores as
// opaque JSON.
type goldenJob struct {
	Key     string   `json:"key"`
	Pending []string `json:"pending"`
	SHA256  string   `json:"sha256,omitempty"`
}

// writeGoldenSpool builds the golden spool in dir with a fixed clock and
// jitter: an entry as enqueued, one retried after a failure with its
// payload updated, one failed permanently, and one handed off by another
// process and not yet adopted.
func writeGoldenSpool(t *testing.T, dir string) {
	t.Helper()
	clk := &clock{t: goldenT0}
	s := openT(t, dir, Options{Now: clk.Now, Backoff: Backoff{Base: time.Second, Max: time.Minute}})
	s.jitter = func(n int64) int64 { return n } // the longest wait: deterministic

	enqueueT(t, s, "segments", "segment bytes\n", goldenJob{Key: "segments/0000000000000029-000000000000002b.seg", Pending: []string{"s3://bucket/db"}})

	clk.Advance(time.Second)
	enqueueT(t, s, "files", "never uploaded\n", goldenJob{Key: "files/broken.bin", Pending: []string{"s3://bucket/db"}})
	e := claimT(t, s, "files")
	clk.Advance(time.Second)
	if err := e.Fail(errors.New("put files/broken.bin: 503 Slow Down")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	e = claimT(t, s, "files")
	clk.Advance(time.Second)
	if err := e.FailPermanently(errors.New("put files/broken.bin: 403 AccessDenied")); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Second)
	data := "id,name\n1,ferry\n"
	enqueueT(t, s, "files", data, goldenJob{Key: "files/report.csv", Pending: []string{"s3://a/db", "s3://b/db"}})
	e = claimT(t, s, "files")
	if err := e.UpdatePayload(goldenJob{Key: "files/report.csv", Pending: []string{"s3://b/db"},
		SHA256: "bc1a2088db2fed72ea512ea0a0b53285ab045ac954d09a3c6f600dd87b6490ce"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := e.Fail(errors.New("put files/report.csv: connection reset by peer")); err != nil {
		t.Fatal(err)
	}

	src := filepath.Join(t.TempDir(), "pushed")
	if err := os.WriteFile(src, []byte("handed over\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Handoff(dir, "segments", goldenJob{Key: "segments/000000000000002c-000000000000002c.seg", Pending: []string{"s3://bucket/db"}}, src); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

var (
	// idSuffix matches the random part of an entry ID and handoffName the
	// random name of a handed-off entry: the only names the spool draws
	// at random, so the only ones that differ between two runs.
	idSuffix    = regexp.MustCompile(`(/[0-9]{20})-[0-9a-f]{8}(/|$)`)
	handoffName = regexp.MustCompile(`^(incoming/[a-z0-9._-]+/)[0-9a-f]{24}(/|$)`)
	// createdField matches a meta.json's creation time. Handoff stamps it
	// with time.Now, not with a spool's clock.
	createdField = regexp.MustCompile(`"created":"[^"]*"`)
)

func normalName(rel string) string {
	rel = idSuffix.ReplaceAllString(rel, "$1-xxxxxxxx$2")
	return handoffName.ReplaceAllString(rel, "${1}<handoff>$2")
}

// TestGoldenWrite builds the golden spool with today's code and requires
// the layout, modes and every file of the golden directory byte for byte.
// Two things are normalised, because the code draws them from sources a
// test cannot fix: the random halves of entry IDs and handoff names, and
// the creation time Handoff takes from time.Now (checked to be fresh, then
// replaced by the golden file's).
func TestGoldenWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	before := time.Now().Add(-time.Second)
	writeGoldenSpool(t, dir)
	after := time.Now().Add(time.Second)

	// The whole tree, empty directories and modes included, as a literal.
	wantTree := []string{
		"d700 .",
		"f600 LOCK",
		"d700 incoming",
		"d700 incoming/.tmp",
		"d700 incoming/segments",
		"d700 incoming/segments/<handoff>",
		"f600 incoming/segments/<handoff>/data",
		"f600 incoming/segments/<handoff>/meta.json",
		"d700 q",
		"d700 q/failed",
		"d700 q/failed/checkout",
		"d700 q/failed/01740830401000000007-xxxxxxxx",
		"f600 q/failed/01740830401000000007-xxxxxxxx/data",
		"f600 q/failed/01740830401000000007-xxxxxxxx/meta.json",
		"d700 q/files",
		"d700 q/files/01740830405000000007-xxxxxxxx",
		"f600 q/files/01740830405000000007-xxxxxxxx/data",
		"f600 q/files/01740830405000000007-xxxxxxxx/meta.json",
		"d700 q/files/checkout",
		"d700 q/segments",
		"d700 q/segments/01740830400000000007-xxxxxxxx",
		"f600 q/segments/01740830400000000007-xxxxxxxx/data",
		"f600 q/segments/01740830400000000007-xxxxxxxx/meta.json",
		"d700 q/segments/checkout",
		"d700 tmp",
	}
	var tree []string
	got := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		kind := "f"
		if d.IsDir() {
			kind = "d"
		}
		tree = append(tree, kind+strconv.FormatUint(uint64(fi.Mode().Perm()), 8)+" "+normalName(rel))
		if !d.IsDir() && rel != lockName {
			got[rel], err = os.ReadFile(p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tree)
	slices.Sort(wantTree)
	if !slices.Equal(tree, wantTree) {
		t.Errorf("spool tree\n%q\nwant\n%q", tree, wantTree)
	}
	if pid, err := os.ReadFile(filepath.Join(dir, lockName)); err != nil || string(pid) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("LOCK holds %q, %v; want this process's pid and a newline", pid, err)
	}
	for rel, data := range got {
		if handoffName.MatchString(rel) && filepath.Base(rel) == metaName {
			var m struct{ Created time.Time }
			if err := json.Unmarshal(data, &m); err != nil || m.Created.Before(before) || m.Created.After(after) {
				t.Errorf("%s: created %s, %v; want a time between %s and %s", rel, m.Created, err, before, after)
			}
		}
	}

	if *update {
		if err := os.RemoveAll(goldenDir); err != nil {
			t.Fatal(err)
		}
		for rel, data := range got {
			if handoffName.MatchString(rel) && filepath.Base(rel) == metaName {
				data = createdField.ReplaceAll(data, []byte(`"created":"2025-03-01T12:00:05.5Z"`))
			}
			p := filepath.Join(goldenDir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("wrote %d files under %s", len(got), goldenDir)
		return
	}

	want := map[string][]byte{}
	for rel, data := range readGoldenTree(t) {
		want[normalName(rel)] = data
	}
	for rel, data := range got {
		norm := normalName(rel)
		w, ok := want[norm]
		if !ok {
			t.Errorf("%s is not in the golden spool", rel)
			continue
		}
		delete(want, norm)
		if handoffName.MatchString(rel) && filepath.Base(rel) == metaName {
			if c := createdField.Find(w); c != nil {
				data = createdField.ReplaceAll(data, c)
			}
		}
		if !bytes.Equal(data, w) {
			t.Errorf("%s differs from the golden file: the spool's on-disk format changed; "+
				"a changed meta.json needs a new version, and the old one must stay readable.\ngot:  %s\nwant: %s", rel, data, w)
		}
	}
	for rel := range want {
		t.Errorf("golden file %s was not written", rel)
	}
}

// TestGoldenRead opens a copy of the golden spool with today's code and
// checks everything it hands out against values written out here, not
// derived from the writer, so that a change to writer and reader together
// still fails.
func TestGoldenRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	for rel, data := range readGoldenTree(t) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), dirPerm); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, filePerm); err != nil {
			t.Fatal(err)
		}
	}
	const (
		idA = ID("01740830400000000007-13bd1cdc") // in segments, never tried
		idC = ID("01740830401000000007-2c87b54f") // failed permanently
		idB = ID("01740830405000000007-13065839") // in files, tried once
	)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 7, time.UTC)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

	// fsck reads the spool read-only, as a second process would.
	r, err := Check(dir, Limits{}, at(6))
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries != 3 || r.Bytes != 14+15+16 || len(r.Problems) != 1 ||
		r.Problems[0].Kind != KindFailed || r.Problems[0].Entry != idC || r.Problems[0].Queue != FailedQueue {
		var b bytes.Buffer
		r.WriteText(&b)
		t.Errorf("Check of the golden spool:\n%s\nwant 3 entries of 45 bytes and one problem: entry %s failed", b.String(), idC)
	}

	clk := &clock{t: at(6)}
	s := openT(t, dir, Options{Now: clk.Now})
	if s.Len("segments") != 2 || s.Len("files") != 1 || s.Len(FailedQueue) != 1 {
		t.Errorf("queues hold segments %d, files %d, failed %d; want 2 (one adopted from incoming/), 1, 1",
			s.Len("segments"), s.Len("files"), s.Len(FailedQueue))
	}

	type wantEntry struct {
		id       ID
		created  time.Time
		attempts int
		lastErr  string
		job      goldenJob
		data     string
	}
	check := func(e *Entry, w wantEntry) {
		t.Helper()
		if w.id != "" && e.ID() != w.id {
			t.Errorf("claimed %s, want %s", e.ID(), w.id)
		}
		if !e.Created().Equal(w.created) || e.Attempts() != w.attempts || e.LastError() != w.lastErr || e.Size() != int64(len(w.data)) {
			t.Errorf("entry %s: created %s, attempts %d, last error %q, size %d; want %s, %d, %q, %d",
				e.ID(), e.Created(), e.Attempts(), e.LastError(), e.Size(), w.created, w.attempts, w.lastErr, len(w.data))
		}
		var job goldenJob
		if err := e.Payload(&job); err != nil || job.Key != w.job.Key || !slices.Equal(job.Pending, w.job.Pending) || job.SHA256 != w.job.SHA256 {
			t.Errorf("entry %s: payload %+v, %v; want %+v", e.ID(), job, err, w.job)
		}
		if d := readData(t, e); d != w.data {
			t.Errorf("entry %s: data %q, want %q", e.ID(), d, w.data)
		}
	}

	check(claimT(t, s, "segments"), wantEntry{
		id: idA, created: t0,
		job:  goldenJob{Key: "segments/0000000000000029-000000000000002b.seg", Pending: []string{"s3://bucket/db"}},
		data: "segment bytes\n",
	})
	adopted := claimT(t, s, "segments")
	if nanos, ok := parseID(string(adopted.ID())); !ok || nanos != at(6).UnixNano() {
		t.Errorf("the adopted entry has ID %s, want a fresh one from the spool's clock, %d", adopted.ID(), at(6).UnixNano())
	}
	check(adopted, wantEntry{
		created: time.Date(2025, 3, 1, 12, 0, 5, 500_000_000, time.UTC),
		job:     goldenJob{Key: "segments/000000000000002c-000000000000002c.seg", Pending: []string{"s3://bucket/db"}},
		data:    "handed over\n",
	})

	// The entry in files waits out its backoff: its next try is read back.
	var empty *EmptyError
	if e, err := s.Claim("files"); !errors.As(err, &empty) || !empty.Next.Equal(at(7)) {
		t.Fatalf("Claim(files) = %v, %v; want ErrEmpty until %s", e, err, at(7))
	}
	clk.Set(at(7))
	check(claimT(t, s, "files"), wantEntry{
		id: idB, created: at(5), attempts: 1, lastErr: "put files/report.csv: connection reset by peer",
		job: goldenJob{Key: "files/report.csv", Pending: []string{"s3://b/db"},
			SHA256: "bc1a2088db2fed72ea512ea0a0b53285ab045ac954d09a3c6f600dd87b6490ce"},
		data: "id,name\n1,ferry\n",
	})

	failed, err := s.Failed()
	if err != nil {
		t.Fatal(err)
	}
	wantFailed := FailedEntry{
		ID: idC, From: "files", Reason: "put files/broken.bin: 403 AccessDenied",
		FailedAt: at(4), Created: at(1), Attempts: 1, Size: 15,
		Payload: json.RawMessage(`{"key":"files/broken.bin","pending":["s3://bucket/db"]}`),
	}
	if len(failed) != 1 || failed[0].ID != wantFailed.ID || failed[0].From != wantFailed.From || failed[0].Reason != wantFailed.Reason ||
		!failed[0].FailedAt.Equal(wantFailed.FailedAt) || !failed[0].Created.Equal(wantFailed.Created) ||
		failed[0].Attempts != wantFailed.Attempts || failed[0].Size != wantFailed.Size || !bytes.Equal(failed[0].Payload, wantFailed.Payload) {
		t.Errorf("Failed() = %+v, want [%+v]", failed, wantFailed)
	}
	e := claimT(t, s, FailedQueue)
	if d := readData(t, e); d != "never uploaded\n" {
		t.Errorf("failed entry's data %q, want %q", d, "never uploaded\n")
	}
}

// readGoldenTree returns the golden files by their slash-separated path
// under goldenDir.
func readGoldenTree(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(goldenDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(goldenDir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create the golden files)", err)
	}
	return out
}
