package spool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/durable"
)

// incomingName is the directory where processes that do not own the spool
// hand entries over: `ferry push` while a daemon runs. The owner adopts
// them into its queues; nobody else moves anything in q/.
const incomingName = "incoming"

// Handoff spools a copy of the file src for queue without taking the
// spool's lock, for a process that is not the owner. The entry is built in
// incoming/.tmp/, fsynced, and renamed into incoming/<queue>/, where the
// owner adopts it (see Adopt) on its next Open or its next poll. Once
// Handoff returns, the copy is durable; src is left alone.
//
// Handed-off entries are outside the MaxBytes accounting until adopted: a
// person who runs push asked for those bytes to be kept, and adoption
// waits while they do not fit rather than dropping them.
func Handoff(dir, queue string, payload any, src string) error {
	if err := checkQueue(queue); err != nil {
		return err
	}
	raw, err := marshalPayload(payload)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		return fmt.Errorf("hand %s to queue %s of spool %s: %w", src, queue, dir, err)
	}
	staging := filepath.Join(dir, incomingName, ".tmp")
	target := filepath.Join(dir, incomingName, queue)
	for _, d := range []string{dir, filepath.Join(dir, incomingName), staging, target} {
		if err := mkdir(d); err != nil {
			return fail(err)
		}
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fail(err)
	}
	name := hex.EncodeToString(rnd[:])
	stage := filepath.Join(staging, name)
	if err := os.Mkdir(stage, dirPerm); err != nil {
		return fail(err)
	}
	defer removeAllQuiet(stage) // a no-op once renamed
	f, err := os.OpenFile(filepath.Join(stage, dataName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return fail(err)
	}
	err = copyFileSync(f.Sync, src, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	fi, err := os.Stat(filepath.Join(stage, dataName))
	if err != nil {
		return fail(err)
	}
	m := &meta{Created: time.Now(), Size: fi.Size(), Payload: raw}
	b, err := m.encode()
	if err == nil {
		err = writeFileSync(filepath.Join(stage, metaName), b)
	}
	if err == nil {
		err = durable.SyncDir(stage)
	}
	if err == nil {
		err = os.Rename(stage, filepath.Join(target, name))
	}
	if err == nil {
		err = durable.SyncDir(target)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// Adopt moves the entries handed over by other processes into their queues,
// giving each a fresh ID so that queue order stays creation order as the
// owner sees it. An entry that does not fit under MaxBytes waits in
// incoming/ for the next call. It returns how many entries it adopted.
func (s *Spool) Adopt() (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.end()
	in := filepath.Join(s.dir, incomingName)
	queues, err := os.ReadDir(in)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("adopt handed-off entries in %s: %w", in, err)
	}
	if err := sweepAbandoned(filepath.Join(in, ".tmp"), s.now()); err != nil {
		return 0, fmt.Errorf("adopt handed-off entries in %s: %w", in, err)
	}
	adopted := 0
	for _, qd := range queues {
		if !qd.IsDir() || !validQueue(qd.Name()) {
			continue
		}
		n, err := s.adoptQueue(qd.Name())
		adopted += n
		if err != nil {
			return adopted, fmt.Errorf("adopt handed-off entries for queue %s in %s: %w", qd.Name(), s.dir, err)
		}
	}
	return adopted, nil
}

// abandonedAfter is how long a hand-over being built in incoming/.tmp/
// may go untouched before the owner takes it for abandoned (its process
// died part way) and removes it. A live one writes its data as it goes;
// one stalled that long that wakes up again finds its staging gone and
// fails, telling its caller.
const abandonedAfter = 15 * time.Minute

// sweepAbandoned removes what a process handing entries over left in
// staging, untouched for abandonedAfter.
func sweepAbandoned(staging string, now time.Time) error {
	des, err := os.ReadDir(staging)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range des {
		p := filepath.Join(staging, de.Name())
		if newest, ok := newestMtime(p); ok && now.Sub(newest) > abandonedAfter {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Spool) adoptQueue(queue string) (int, error) {
	dir := filepath.Join(s.dir, incomingName, queue)
	names, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	adopted := 0
	for _, de := range names {
		p := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(filepath.Join(p, metaName))
		if err != nil {
			continue // Check reports what cannot be read; it stays put
		}
		m, err := parseMeta(b)
		if err != nil {
			continue
		}
		if s.fits(m.Size) != nil {
			return adopted, nil // the rest waits until the queue drains
		}
		if err := s.ensureQueueDir(queue); err != nil {
			return adopted, err
		}
		s.mu.Lock()
		id := s.newID()
		s.mu.Unlock()
		if err := os.Rename(p, readyPath(s.dir, queue, id)); err != nil {
			return adopted, err
		}
		s.mu.Lock()
		s.bytes += m.Size
		q := s.queue(queue)
		q.bytes += m.Size
		q.put(&item{id: id, size: m.Size}, s.now())
		q.notify()
		s.mu.Unlock()
		adopted++
	}
	if adopted > 0 {
		if err := s.groupSync(queueDir(s.dir, queue), dir); err != nil {
			return adopted, err
		}
	}
	return adopted, nil
}

// HandoffFile is one entry for HandoffFiles: the path of the file it
// copies, or with Src empty, its bytes; and its payload.
type HandoffFile struct {
	Src     string
	Data    []byte
	Payload any
}

// HandoffFiles hands many files over as Handoff does one, for `ferry push`
// of a directory while a daemon runs: each copy is built in incoming/.tmp/
// as Handoff builds it, all of them are made durable together (one
// syncfs, or fsyncs side by side, as a Batch does), and then renamed into
// incoming/<queue>/, whose one fsync hands them all over. It returns how
// many it handed over, in order: on an error those stay handed over, and
// none of the others is.
func HandoffFiles(dir, queue string, files []HandoffFile) (int, error) {
	if err := checkQueue(queue); err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, nil
	}
	fail := func(err error) error {
		return fmt.Errorf("hand %d file(s) to queue %s of spool %s: %w", len(files), queue, dir, err)
	}
	staging := filepath.Join(dir, incomingName, ".tmp")
	target := filepath.Join(dir, incomingName, queue)
	for _, d := range []string{dir, filepath.Join(dir, incomingName), staging, target} {
		if err := mkdir(d); err != nil {
			return 0, fail(err)
		}
	}
	// Opened before anything is written, so that its syncfs reports any
	// write-back failure of what follows.
	stagingDir, err := os.Open(staging)
	if err != nil {
		return 0, fail(err)
	}
	defer stagingDir.Close()
	var stages []*staged
	defer func() {
		for _, st := range stages {
			removeAllQuiet(st.dir) // a no-op once renamed
		}
	}()
	for _, f := range files {
		st, err := stageHandoff(staging, f)
		if err != nil {
			what := f.Src
			if what == "" {
				what = fmt.Sprintf("%d bytes", len(f.Data))
			}
			return 0, fmt.Errorf("hand %s to queue %s of spool %s: %w", what, queue, dir, err)
		}
		stages = append(stages, st)
	}
	if err := syncStaged(stages, stagingDir, durable.SyncFS); err != nil {
		return 0, fail(err)
	}
	n := 0
	for _, st := range stages {
		if err := os.Rename(st.dir, filepath.Join(target, string(st.id))); err != nil {
			err = fmt.Errorf("%d of %d handed over: %w", n, len(stages), err)
			if serr := durable.SyncDir(target); serr != nil {
				err = errors.Join(err, serr)
			}
			return n, fail(err)
		}
		n++
	}
	if err := durable.SyncDir(target); err != nil {
		return n, fail(err)
	}
	return n, nil
}

// stageHandoff writes a copy of f.Src and its meta into a new directory
// under staging, without fsyncing them.
func stageHandoff(staging string, f HandoffFile) (*staged, error) {
	raw, err := marshalPayload(f.Payload)
	if err != nil {
		return nil, err
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := hex.EncodeToString(rnd[:])
	st := &staged{id: ID(name), dir: filepath.Join(staging, name)}
	if err := os.Mkdir(st.dir, dirPerm); err != nil {
		return nil, err
	}
	err = func() error {
		copyIn := func(w io.Writer) error {
			_, err := w.Write(f.Data)
			return err
		}
		if f.Src != "" {
			in, err := os.Open(f.Src)
			if err != nil {
				return err
			}
			defer in.Close()
			fi, err := in.Stat()
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return errors.New("not a regular file")
			}
			copyIn = func(w io.Writer) error { return copyFile(w, in) }
		}
		out, err := os.OpenFile(filepath.Join(st.dir, dataName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
		if err != nil {
			return err
		}
		cw := &countWriter{w: out}
		err = copyIn(cw)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		st.size = cw.n
		b, err := (&meta{Created: time.Now(), Size: cw.n, Payload: raw}).encode()
		if err != nil {
			return err
		}
		return writeFile(filepath.Join(st.dir, metaName), b)
	}()
	if err != nil {
		removeAllQuiet(st.dir)
		return nil, err
	}
	return st, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
