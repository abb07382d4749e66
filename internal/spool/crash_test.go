package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const crashEnv = "FERRY_SPOOL_TEST_CRASH"

// The child's logs, each line an entry ID, appended and fsynced:
//
//	enqueued  after Enqueue returned
//	finishing just before Done
//	done      after Done returned
const (
	enqueuedLog  = "enqueued"
	finishingLog = "finishing"
	doneLog      = "done"
)

// spareMark is a file the child creates once it has built an entry in a
// spare directory (see spare.go), so that the test knows the kills
// covered that path.
const spareMark = "built-in-spare"

var crashQueues = []string{"a", "b", "seg"}

func crashOptions() Options {
	return Options{
		MaxBytes: 2 << 20,
		Backoff:  Backoff{Base: time.Millisecond, Max: 4 * time.Millisecond},
		Ordered:  []string{"seg"},
	}
}

type crashPayload struct {
	Token string `json:"token"`
	Reps  int    `json:"reps"`
}

func (p crashPayload) data() []byte { return bytes.Repeat([]byte(p.Token), p.Reps) }

// crashChild works the spool in dir/spool until it is killed: it enqueues,
// claims, verifies, fails, releases, moves and completes entries, logging
// what it did. It never exits on its own unless something is wrong (exit 3)
// or 20 seconds pass (the parent is gone).
func crashChild(dir string) {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(3)
	}
	s, err := Open(filepath.Join(dir, "spool"), crashOptions())
	if err != nil {
		fail("open: %v", err)
	}
	logs := map[string]*os.File{}
	for _, name := range []string{enqueuedLog, finishingLog, doneLog} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fail("%v", err)
		}
		logs[name] = f
	}
	record := func(name string, id ID) {
		if _, err := logs[name].WriteString(string(id) + "\n"); err != nil {
			fail("%v", err)
		}
		if err := logs[name].Sync(); err != nil {
			fail("%v", err)
		}
	}
	fmt.Println("ready")
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	deadline := time.Now().Add(20 * time.Second)
	marked := false
	for n := 0; time.Now().Before(deadline); n++ {
		s.mu.Lock()
		reused := s.spareUses > 0
		s.mu.Unlock()
		if reused && !marked {
			if err := os.WriteFile(filepath.Join(dir, spareMark), nil, 0o600); err != nil {
				fail("%v", err)
			}
			marked = true
		}
		if rng.IntN(4) == 0 {
			// A batch, as push spools a directory: its entries are
			// logged only once Commit has returned.
			for _, id := range crashBatch(s, dir, rng, n, fail) {
				record(enqueuedLog, id)
			}
			continue
		}
		for range 1 + rng.IntN(2) {
			p := crashPayload{Token: fmt.Sprintf("<%d.%d>", os.Getpid(), n), Reps: rng.IntN(3000)}
			id, err := s.Enqueue(crashQueues[rng.IntN(len(crashQueues))], p, writeBytes(p.data()))
			if errors.Is(err, ErrFull) {
				break
			}
			if err != nil {
				fail("enqueue: %v", err)
			}
			record(enqueuedLog, id)
		}
		q := crashQueues[rng.IntN(len(crashQueues))]
		if rng.IntN(20) == 0 {
			q = FailedQueue
		}
		e, err := s.Claim(q)
		if errors.Is(err, ErrEmpty) {
			continue
		}
		if err != nil {
			fail("claim: %v", err)
		}
		var p crashPayload
		if err := e.Payload(&p); err != nil {
			fail("%v", err)
		}
		if got, err := os.ReadFile(e.Path()); err != nil || !bytes.Equal(got, p.data()) {
			fail("entry %s: data differs from its payload (%d bytes, %v)", e.ID(), len(got), err)
		}
		switch r := rng.IntN(13); {
		case r == 0:
			err = e.Fail(errors.New("transient"))
		case r == 1:
			err = e.Release()
		case r == 2 && q != "seg":
			err = e.MoveTo(crashQueues[rng.IntN(2)])
		case r == 3 && q != FailedQueue:
			err = e.FailPermanently(errors.New("permanent"))
		case r == 4:
			err = e.UpdatePayload(p)
			if err == nil {
				err = e.Release()
			}
		case r == 5:
			// Done of several entries at once, as the uploader
			// finishes what it shipped.
			es := []*Entry{e}
			if e2, err2 := s.Claim(q); err2 == nil {
				var p2 crashPayload
				if err := e2.Payload(&p2); err != nil {
					fail("%v", err)
				}
				if got, err := os.ReadFile(e2.Path()); err != nil || !bytes.Equal(got, p2.data()) {
					fail("entry %s: data differs from its payload (%d bytes, %v)", e2.ID(), len(got), err)
				}
				es = append(es, e2)
			} else if !errors.Is(err2, ErrEmpty) {
				fail("claim: %v", err2)
			}
			for _, e := range es {
				record(finishingLog, e.ID())
			}
			if err = s.DoneAll(es); err == nil {
				for _, e := range es {
					record(doneLog, e.ID())
				}
			}
		default:
			record(finishingLog, e.ID())
			if err = e.Done(); err == nil {
				record(doneLog, e.ID())
			}
		}
		if err != nil {
			fail("finish %s: %v", e.ID(), err)
		}
	}
	os.Exit(0)
}

// crashBatch spools 1 to 8 files, written for the purpose, as one batch
// into queue a or b, and returns the IDs Commit gave them.
func crashBatch(s *Spool, dir string, rng *rand.Rand, n int, fail func(string, ...any)) []ID {
	b, err := s.NewBatch(crashQueues[rng.IntN(2)])
	if err != nil {
		fail("batch: %v", err)
	}
	var srcs []string
	defer func() {
		for _, p := range srcs {
			os.Remove(p)
		}
	}()
	for k := range 1 + rng.IntN(8) {
		p := crashPayload{Token: fmt.Sprintf("<%d.%d.%d>", os.Getpid(), n, k), Reps: rng.IntN(3000)}
		src := filepath.Join(dir, fmt.Sprintf("src-%d-%d-%d", os.Getpid(), n, k))
		if err := os.WriteFile(src, p.data(), 0o600); err != nil {
			fail("%v", err)
		}
		srcs = append(srcs, src)
		err := b.AddFile(p, src)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			fail("batch add: %v", err)
		}
	}
	ids, err := b.Commit()
	if err != nil {
		fail("batch commit: %v", err)
	}
	return ids
}

// TestCrashKill9 kills a child working the spool at random moments, 20
// times, restarting it each time, then checks that every entry the child
// was told is spooled is still in the spool or was completed, that no
// completed entry came back, and that the spool is clean.
func TestCrashKill9(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	const kills = 20
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 {
			// Sometimes during Open: sweep and reclaim must survive
			// being killed too.
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		} else {
			ready := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				ready <- line
			}()
			select {
			case line := <-ready:
				if strings.TrimSpace(line) != "ready" {
					cmd.Wait()
					t.Fatalf("child %d said %q: %s", i, line, stderr.String())
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child %d never became ready: %s", i, stderr.String())
			}
			time.Sleep(time.Duration(10+rng.IntN(120)) * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		go io.Copy(io.Discard, stdout)
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != -1 {
			t.Fatalf("child %d ended by itself (%v): %s", i, err, stderr.String())
		}
	}

	enqueued, _ := readIDLog(t, filepath.Join(dir, enqueuedLog))
	finishing, _ := readIDLog(t, filepath.Join(dir, finishingLog))
	done, dups := readIDLog(t, filepath.Join(dir, doneLog))
	if len(dups) > 0 {
		t.Fatalf("entries completed twice (Done did not stick): %v", dups)
	}
	if len(done) == 0 {
		t.Fatal("the children completed nothing; the test proved nothing")
	}
	if _, err := os.Stat(filepath.Join(dir, spareMark)); err != nil {
		t.Fatalf("no child built an entry in a spare directory: %v", err)
	}

	s := openT(t, filepath.Join(dir, "spool"), crashOptions())
	tmpEmpty(t, s.Dir())
	r, err := Check(s.Dir(), Limits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems {
		if p.Kind != KindFailed { // the child fails some entries on purpose
			t.Errorf("after reopening: %s %s: %s", p.Kind, p.Path, p.Detail)
		}
	}
	var bytesSeen int64
	remaining := map[ID]bool{}
	for _, q := range append(crashQueues, FailedQueue) {
		for s.Len(q) > 0 {
			e, err := s.Wait(t.Context(), q)
			if err != nil {
				t.Fatalf("drain %s: %v", q, err)
			}
			var p crashPayload
			e.Payload(&p)
			if got := readData(t, e); got != string(p.data()) {
				t.Fatalf("entry %s: data differs from its payload", e.ID())
			}
			if done[e.ID()] {
				t.Fatalf("entry %s was completed, yet it is back", e.ID())
			}
			remaining[e.ID()] = true
			bytesSeen += e.Size()
			if err := e.Done(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if s.Bytes() != 0 {
		t.Fatalf("Bytes = %d after draining %d bytes: accounting drifted", s.Bytes(), bytesSeen)
	}
	lost := 0
	for id := range enqueued {
		if done[id] || remaining[id] {
			continue
		}
		if !finishing[id] {
			t.Errorf("entry %s was enqueued and neither completed nor in the spool: lost", id)
		}
		lost++ // killed between Done and logging it
	}
	// A kill between a Done and its log loses one entry's log line, and
	// one between a DoneAll and its logs two.
	if lost > 2*kills {
		t.Errorf("%d entries finished without being logged done, more than the %d kills explain", lost, kills)
	}
	mustCheckOK(t, s.Dir(), time.Now())
	t.Logf("%d enqueued, %d completed, %d left in the spool, %d in flight at a kill", len(enqueued), len(done), len(remaining), lost)
}

// readIDLog reads a log of IDs, ignoring a torn last line, and returns the
// set and the IDs seen more than once.
func readIDLog(t *testing.T, path string) (map[ID]bool, []ID) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	set := map[ID]bool{}
	var dups []ID
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[:len(lines)-1] { // the last is empty or torn
		id := ID(line)
		if _, ok := parseID(line); !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		if set[id] {
			dups = append(dups, id)
		}
		set[id] = true
	}
	return set, dups
}
