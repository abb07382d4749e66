// Package filestore is the objstore.Store behind file:// replica URLs: one
// regular file per object under a root directory, so a replica on a local
// disk or a mounted volume needs no server and can be read with ls and cat.
//
// Every write is atomic and durable: the bytes go to a temporary file that
// is fsynced, then renamed over the key, then the directory is fsynced. The
// checksum and user metadata travel as an extended attribute of the file
// itself, so they are replaced in the same rename as the bytes and a crash
// can never pair new bytes with old metadata.
package filestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferrydb/ferry/internal/durable"
	"github.com/ferrydb/ferry/internal/objstore"
)

// reservedPrefix marks the store's own directories under the root; keys may
// not start with it.
const reservedPrefix = ".ferry-"

const xattrName = "user.ferry"

// attr is what the extended attribute holds.
type attr struct {
	SHA256   string            `json:"sha256"`
	Metadata map[string]string `json:"meta,omitempty"`
}

// Store keeps objects as files under Root.
type Store struct {
	root  string
	tmp   string
	locks *keyLocks
}

// New opens (creating if needed) a store rooted at the absolute path root.
func New(root string) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("file store root %q is not an absolute path", root)
	}
	tmp := filepath.Join(root, reservedPrefix+"tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("create file store %s: %w", root, err)
	}
	locks, err := newKeyLocks(filepath.Join(root, reservedPrefix+"locks"))
	if err != nil {
		return nil, fmt.Errorf("create file store %s: %w", root, err)
	}
	return &Store{root: root, tmp: tmp, locks: locks}, nil
}

// Close releases the lock files.
func (s *Store) Close() error { return s.locks.close() }

func (s *Store) path(op, key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", &objstore.Error{Op: op, Key: key, Err: err}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func validKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("key segment %q is not allowed", seg)
		}
		// Reserved at every depth, so that a store rooted inside another
		// one (file:///r and file:///r/sub) never lists the inner one's
		// lock and temporary files as objects.
		if strings.HasPrefix(seg, reservedPrefix) {
			return fmt.Errorf("key segments starting with %q are reserved", reservedPrefix)
		}
	}
	if strings.ContainsRune(key, 0) {
		return errors.New("key contains a NUL byte")
	}
	return nil
}

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	p, err := s.path("put", key)
	if err != nil {
		return objstore.Info{}, err
	}
	info, err := s.put(ctx, key, p, body, opts)
	if err != nil {
		var oe *objstore.Error
		if errors.As(err, &oe) {
			return objstore.Info{}, err
		}
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: err}
	}
	return info, nil
}

func (s *Store) put(ctx context.Context, key, p string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Info{}, err
	}
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return objstore.Info{}, err
	}
	tmpName := f.Name()
	defer os.Remove(tmpName) // no-op once renamed
	sum, size, err := copyHashing(ctx, f, body)
	if err == nil && opts.SHA256 != "" && opts.SHA256 != sum {
		err = fmt.Errorf("body sha256 %s differs from the declared %s", sum, opts.SHA256)
	}
	if err == nil {
		err = setAttr(f, attr{SHA256: sum, Metadata: opts.Metadata})
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return objstore.Info{}, err
	}

	unlock, err := s.locks.lock(key)
	if err != nil {
		return objstore.Info{}, err
	}
	defer unlock()
	if opts.IfNoneMatch || opts.IfMatch != "" {
		cur, err := statObject(key, p)
		switch {
		case err != nil && !objstore.IsNotFound(err):
			return objstore.Info{}, err
		case opts.IfNoneMatch && err == nil:
			return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: fmt.Errorf("%w: key exists", objstore.ErrPreconditionFailed)}
		case opts.IfMatch != "" && (err != nil || cur.ETag != opts.IfMatch):
			return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: fmt.Errorf("%w: etag does not match", objstore.ErrPreconditionFailed)}
		}
	}
	// A concurrent Delete may remove the parent directory between MkdirAll
	// and Rename, as it prunes directories it emptied; try again then.
	for attempt := 0; ; attempt++ {
		if err = mkdirAllSynced(s.root, filepath.Dir(p)); err == nil {
			if err = os.Rename(tmpName, p); err == nil {
				break
			}
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			return objstore.Info{}, err
		}
	}
	if err := durable.SyncDir(filepath.Dir(p)); err != nil {
		return objstore.Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return objstore.Info{}, err
	}
	return objstore.Info{Key: key, Size: size, ETag: etag(sum), Modified: st.ModTime(), SHA256: sum, Metadata: opts.Metadata}, nil
}

func etag(sum string) string { return `"` + sum + `"` }

// Get implements objstore.Store.
func (s *Store) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	p, err := s.path("get", key)
	if err != nil {
		return nil, objstore.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: err}
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: mapNotExist(err)}
	}
	info, err := infoOf(key, f)
	if err != nil {
		f.Close()
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: err}
	}
	if rng == nil {
		return objstore.VerifyReader(f, key, info.Size, info.SHA256), info, nil
	}
	start, end, err := objstore.Bounds(*rng, info.Size)
	if err != nil {
		f.Close()
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: err}
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, start, end-start), f}, info, nil
}

// Head implements objstore.Store.
func (s *Store) Head(ctx context.Context, key string) (objstore.Info, error) {
	p, err := s.path("head", key)
	if err != nil {
		return objstore.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return objstore.Info{}, &objstore.Error{Op: "head", Key: key, Err: err}
	}
	return statObject(key, p)
}

func statObject(key, p string) (objstore.Info, error) {
	f, err := os.Open(p)
	if err != nil {
		return objstore.Info{}, &objstore.Error{Op: "head", Key: key, Err: mapNotExist(err)}
	}
	defer f.Close()
	info, err := infoOf(key, f)
	if err != nil {
		return objstore.Info{}, &objstore.Error{Op: "head", Key: key, Err: err}
	}
	return info, nil
}

// infoOf reads size and attributes from one open file, so both describe the
// same version of the object even while it is being replaced.
func infoOf(key string, f *os.File) (objstore.Info, error) {
	st, err := f.Stat()
	if err != nil {
		return objstore.Info{}, err
	}
	if !st.Mode().IsRegular() {
		return objstore.Info{}, objstore.ErrNotFound
	}
	a, err := getAttr(f)
	if err != nil {
		return objstore.Info{}, err
	}
	return objstore.Info{Key: key, Size: st.Size(), ETag: etag(a.SHA256), Modified: st.ModTime(), SHA256: a.SHA256, Metadata: a.Metadata}, nil
}

func mapNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return objstore.ErrNotFound
	}
	return err
}

// Delete implements objstore.Store. It prunes directories it leaves empty,
// so a store whose keys come and go does not accumulate empty folders.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return &objstore.Error{Op: "delete", Key: key, Err: err}
		}
		p, err := s.path("delete", key)
		if err != nil {
			return err
		}
		if err := s.delete(key, p); err != nil {
			return &objstore.Error{Op: "delete", Key: key, Err: err}
		}
	}
	return nil
}

func (s *Store) delete(key, p string) error {
	unlock, err := s.locks.lock(key)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	dir := filepath.Dir(p)
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	for dir != s.root && strings.HasPrefix(dir, s.root) {
		if os.Remove(dir) != nil {
			break // not empty, or already gone: either way we are done
		}
		dir = filepath.Dir(dir)
	}
	return nil
}

// List implements objstore.Store. It walks directories depth first with
// each directory's entries sorted as their keys sort (a directory "a" sorts
// as "a/"), which yields keys in global byte order while holding only one
// directory listing per level in memory.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) {
		dir, _ := pathSplit(prefix)
		start := filepath.Join(s.root, filepath.FromSlash(dir))
		_ = s.walk(ctx, start, dir, prefix, yield)
	}
}

// pathSplit splits prefix at its last '/': "a/b/c" gives "a/b" and "c".
func pathSplit(prefix string) (dir, base string) {
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return "", prefix
	}
	return prefix[:i], prefix[i+1:]
}

// errStop ends a walk when the consumer breaks out of the loop.
var errStop = errors.New("stop")

func (s *Store) walk(ctx context.Context, dir, keyDir, prefix string, yield func(objstore.Info, error) bool) error {
	if err := ctx.Err(); err != nil {
		yield(objstore.Info{}, &objstore.Error{Op: "list", Key: prefix, Err: err})
		return errStop
	}
	entries, err := readDirSorted(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		yield(objstore.Info{}, &objstore.Error{Op: "list", Key: prefix, Err: err})
		return errStop
	}
	for _, e := range entries {
		key := e.Name()
		if keyDir != "" {
			key = keyDir + "/" + key
		}
		if strings.HasPrefix(e.Name(), reservedPrefix) {
			continue
		}
		if e.IsDir() {
			// Descend only where keys under the directory can match.
			if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				if err := s.walk(ctx, filepath.Join(dir, e.Name()), key, prefix, yield); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) || !e.Type().IsRegular() {
			continue
		}
		info, err := statObject(key, filepath.Join(dir, e.Name()))
		if objstore.IsNotFound(err) {
			continue // deleted since the directory was read
		}
		if !yield(info, err) || err != nil {
			return errStop
		}
	}
	return nil
}

func readDirSorted(dir string) ([]fs.DirEntry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	sortKey := func(e fs.DirEntry) string {
		if e.IsDir() {
			return e.Name() + "/"
		}
		return e.Name()
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(sortKey(a), sortKey(b)) })
	return entries, nil
}

// copyHashing copies body to f, hashing as it goes and stopping if ctx ends.
func copyHashing(ctx context.Context, f *os.File, body io.Reader) (sum string, n int64, err error) {
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return "", n, err
		}
		m, rerr := body.Read(buf)
		if m > 0 {
			h.Write(buf[:m])
			if _, err := f.Write(buf[:m]); err != nil {
				return "", n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), n, nil
		}
		if rerr != nil {
			return "", n, fmt.Errorf("read body: %w", rerr)
		}
	}
}

func setAttr(f *os.File, a attr) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := unix.Fsetxattr(int(f.Fd()), xattrName, b, 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("the file system under %s does not support extended attributes, which file:// replicas need for checksums", filepath.Dir(f.Name()))
		}
		return fmt.Errorf("set checksum attribute: %w", err)
	}
	return nil
}

func getAttr(f *os.File) (attr, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Fgetxattr(int(f.Fd()), xattrName, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < 1<<20 {
			buf = make([]byte, 4*len(buf))
			continue
		}
		if errors.Is(err, unix.ENODATA) {
			// A file put there by something other than ferry: no checksum
			// to verify against, only its length.
			return attr{}, nil
		}
		if err != nil {
			return attr{}, fmt.Errorf("read checksum attribute: %w", err)
		}
		var a attr
		if err := json.Unmarshal(buf[:n], &a); err != nil {
			return attr{}, fmt.Errorf("%w: bad checksum attribute: %v", objstore.ErrCorrupt, err)
		}
		return a, nil
	}
}

// mkdirAllSynced creates dir and any missing parents below root, fsyncing
// each parent whose entry list changed so the new directories survive a
// power loss along with the file about to be renamed into them.
func mkdirAllSynced(root, dir string) error {
	if dir == root {
		return nil
	}
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := mkdirAllSynced(root, parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return durable.SyncDir(parent)
}

var _ objstore.Store = (*Store)(nil)
