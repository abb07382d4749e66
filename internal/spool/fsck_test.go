package spool

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// plantedSpool builds a spool holding one of each problem Check finds,
// and returns where each one is.
func plantedSpool(t *testing.T) (dir string, now time.Time, want map[Kind]string) {
	dir = t.TempDir()
	clk := newClock()
	s := openT(t, dir, Options{Now: clk.Now})
	old := enqueueT(t, s, "up", "old", nil)
	clk.Advance(2 * time.Hour)
	dup := enqueueT(t, s, "up", "dup", nil)
	orphan := enqueueT(t, s, "up", "orphan", nil)
	corrupt := enqueueT(t, s, "up", "corrupt", nil)
	enqueueT(t, s, "up", "fine", nil)
	enqueueT(t, s, "slow", "fine", nil)
	f := enqueueT(t, s, "up", "failed", nil)
	var held []*Entry
	for {
		e := claimT(t, s, "up")
		if e.ID() == f {
			e.FailPermanently(os.ErrPermission)
			break
		}
		held = append(held, e)
	}
	for _, e := range held {
		e.Release()
	}
	claimT(t, s, "up") // one checked out, not a problem
	s.Close()

	now = clk.Now().Add(time.Minute)
	os.Remove(filepath.Join(readyPath(dir, "up", orphan), dataName))
	os.WriteFile(filepath.Join(readyPath(dir, "up", corrupt), metaName), []byte("{"), 0o600)
	cp := exec.Command("cp", "-a", readyPath(dir, "up", dup), readyPath(dir, "slow", dup))
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	staleTmp := filepath.Join(dir, tmpName, "abandoned")
	os.WriteFile(staleTmp, []byte("x"), 0o600)
	os.Chtimes(staleTmp, now.Add(-time.Hour), now.Add(-time.Hour))
	stray := filepath.Join(queueDir(dir, "slow"), "notes.txt")
	os.WriteFile(stray, nil, 0o600)
	os.WriteFile(filepath.Join(dir, "ferry.sock"), nil, 0o600) // not the spool's: ignored

	return dir, now, map[Kind]string{
		KindTooOld:    outPath(dir, "up", old), // the oldest, so the one checked out
		KindDuplicate: readyPath(dir, "up", dup),
		KindOrphan:    readyPath(dir, "up", orphan),
		KindCorrupt:   readyPath(dir, "up", corrupt),
		KindStaleTmp:  staleTmp,
		KindFailed:    readyPath(dir, FailedQueue, f),
	}
}

func TestCheckFindsEachProblem(t *testing.T) {
	dir, now, want := plantedSpool(t)
	r, err := Check(dir, Limits{}, now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[Kind][]string{}
	for _, p := range r.Problems {
		got[p.Kind] = append(got[p.Kind], p.Path)
		if p.Detail == "" || strings.Contains(p.Detail, "\n") {
			t.Errorf("problem %s %s: detail %q is not one line", p.Kind, p.Path, p.Detail)
		}
	}
	for kind, path := range want {
		if kind == KindDuplicate {
			// Either copy may be named; both must be found.
			if len(got[kind]) != 1 || !strings.HasSuffix(got[kind][0], filepath.Base(path)) {
				t.Errorf("%s: got %v, want one of the copies of %s", kind, got[kind], path)
			}
			continue
		}
		if !slicesContain(got[kind], path) {
			t.Errorf("%s: got %v, want %s", kind, got[kind], path)
		}
	}
	if stray := filepath.Join(queueDir(dir, "slow"), "notes.txt"); !slicesContain(got[KindOrphan], stray) {
		t.Errorf("stray file not reported: %v", got[KindOrphan])
	}
	if n := len(r.Problems); n != 7 {
		var b bytes.Buffer
		r.WriteText(&b)
		t.Errorf("%d problems, want 7:\n%s", n, b.String())
	}
	if r.OK() {
		t.Error("OK() with problems")
	}
	for _, q := range r.Queues {
		if q.Name == "up" && q.CheckedOut != 1 {
			t.Errorf("queue up: %d checked out, want 1", q.CheckedOut)
		}
	}

	// A limit per queue: none for "up", so only the others remain.
	r2, _ := Check(dir, Limits{QueueMaxAge: map[string]time.Duration{"up": -1}}, now)
	for _, p := range r2.Problems {
		if p.Kind == KindTooOld {
			t.Errorf("too-old reported with the limit off: %s", p.Path)
		}
	}
	r3, _ := Check(dir, Limits{QueueMaxAge: map[string]time.Duration{"slow": time.Second}}, now)
	if n := countKind(r3, KindTooOld); n < 2 {
		t.Errorf("a 1s limit on queue slow: %d too-old, want at least 2", n)
	}

	// JSON for -json, and back.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"kind":"too-old"`, `"age_seconds":`, `"oldest_seconds":`, `"problems":[`, `"checked_out":1`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("JSON lacks %s: %s", field, b)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for i := range back.Problems {
		// Seconds in JSON keep microseconds.
		if d := back.Problems[i].Age - r.Problems[i].Age; d > time.Microsecond || d < -time.Microsecond {
			t.Errorf("age %v came back as %v", r.Problems[i].Age, back.Problems[i].Age)
		}
		back.Problems[i].Age = r.Problems[i].Age
	}
	if !reflect.DeepEqual(back.Problems, r.Problems) || len(back.Queues) != len(r.Queues) {
		t.Errorf("JSON round trip:\n%+v\n%+v", back.Problems, r.Problems)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"7 problems:", "too-old", "stale-tmp", "QUEUE", "over the 1h0m0s limit of queue up"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text lacks %q:\n%s", s, text.String())
		}
	}
}

func TestCheckCleanSpool(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	enqueueT(t, s, "up", "a", nil)
	enqueueT(t, s, "up", "b", nil)
	claimT(t, s, "up")
	r := mustCheckOK(t, dir, time.Now())
	if r.Entries != 2 || r.Bytes != 2 {
		t.Fatalf("report counts %d entries, %d bytes", r.Entries, r.Bytes)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "OK: no problems") {
		t.Fatalf("text:\n%s", text.String())
	}
	b, _ := json.Marshal(r)
	if !bytes.Contains(b, []byte(`"problems":[]`)) {
		t.Fatalf("clean JSON should list no problems as []: %s", b)
	}
}

func TestCheckNotASpool(t *testing.T) {
	if _, err := Check(t.TempDir(), Limits{}, time.Now()); err == nil || !strings.Contains(err.Error(), "not a spool") {
		t.Fatalf("Check of an empty dir = %v", err)
	}
	if _, err := Check(filepath.Join(t.TempDir(), "missing"), Limits{}, time.Now()); err == nil {
		t.Fatal("Check of a missing dir succeeded")
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func countKind(r Report, k Kind) int {
	n := 0
	for _, p := range r.Problems {
		if p.Kind == k {
			n++
		}
	}
	return n
}
