package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ferrydb/ferry/internal/durable"
	"github.com/ferrydb/ferry/internal/objstore"
)

// DownloadOptions bound what Download accepts from the store. The zero
// value uses the defaults.
type DownloadOptions struct {
	// MaxManifestBytes caps the manifest's size: default
	// DefaultMaxManifestBytes.
	MaxManifestBytes int64
	// MaxEntries caps the manifest's entry count: default
	// DefaultMaxEntries.
	MaxEntries int
}

func (o DownloadOptions) withDefaults() DownloadOptions {
	if o.MaxManifestBytes <= 0 {
		o.MaxManifestBytes = DefaultMaxManifestBytes
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

// stagingInfix names the directory Download unpacks into, beside dest:
// .DEST.ferry-staging-NNNN. A download killed part way leaves it behind,
// under a name that says what it is, and the next download to dest
// removes it (see durable.MkdirBeside).
const stagingInfix = ".ferry-staging-"

// Download fetches the artifact key into dest, which must be absent or an
// empty directory, and returns its manifest.
//
// Nothing is trusted: the manifest is size-capped and validated before the
// tar is fetched, and the tar is unpacked into a staging directory beside
// dest that is renamed into place only once every entry has been checked
// against the manifest. On any error the staging directory is removed and
// dest is as it was. An empty dest directory is replaced rather than
// filled, so it ends up with the artifact root's mode (0755).
func Download(ctx context.Context, store objstore.Store, key, dest string, opts DownloadOptions) (Manifest, error) {
	if err := checkKey(key); err != nil {
		return Manifest{}, err
	}
	opts = opts.withDefaults()
	dest, err := filepath.Abs(dest)
	if err != nil {
		return Manifest{}, fmt.Errorf("download %s: %w", key, err)
	}
	parent := filepath.Dir(dest)
	if dest == parent {
		return Manifest{}, fmt.Errorf("download %s: destination %s is a filesystem root", key, dest)
	}
	// Checked now to fail before fetching anything; rename(2) checks it
	// again, atomically, at the end.
	if err := checkDest(dest); err != nil {
		return Manifest{}, fmt.Errorf("download %s: %w", key, err)
	}
	m, ix, err := readManifest(ctx, store, key, opts)
	if err != nil {
		return Manifest{}, err
	}

	if err := durable.RemoveLeftBehind(dest, stagingInfix); err != nil {
		return Manifest{}, fmt.Errorf("download %s: %w", key, err)
	}
	held, err := durable.MkdirBeside(dest, stagingInfix)
	if err != nil {
		return Manifest{}, fmt.Errorf("download %s: create staging directory beside %s: %w", key, dest, err)
	}
	// Closed, and unlocked, only once the directory has its name or is
	// gone.
	defer held.Close()
	staging := held.Name()
	done := false
	defer func() {
		if !done {
			os.RemoveAll(staging)
		}
	}()
	if err := fetch(ctx, store, key, &m, ix, staging); err != nil {
		return Manifest{}, err
	}
	if err := os.Chmod(staging, os.FileMode(ModeExec)); err != nil {
		return Manifest{}, fmt.Errorf("download %s: %w", key, err)
	}
	// rename(2), unlike os.Rename, replaces an empty directory and refuses
	// a non-empty one or a non-directory in the same atomic step. So there
	// is no window between checking dest and replacing it: if anything
	// appears in dest meanwhile, the rename fails and dest keeps it.
	if err := unix.Rename(staging, dest); err != nil {
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EISDIR) {
			return Manifest{}, fmt.Errorf("download %s: %s: %w", key, dest, ErrDestNotEmpty)
		}
		return Manifest{}, fmt.Errorf("download %s: rename %s to %s: %w", key, staging, dest, err)
	}
	done = true
	if err := durable.SyncDir(parent); err != nil {
		return Manifest{}, fmt.Errorf("download %s: %w", key, err)
	}
	return m, nil
}

// Peek returns the manifest of the artifact key, validated with the default
// limits, without fetching the tar.
func Peek(ctx context.Context, store objstore.Store, key string) (Manifest, error) {
	if err := checkKey(key); err != nil {
		return Manifest{}, err
	}
	m, _, err := readManifest(ctx, store, key, DownloadOptions{}.withDefaults())
	return m, err
}

// checkDest accepts a path that does not exist (in an existing directory)
// or an empty directory. A symlink is refused even if it leads to an empty
// directory: the rename would replace the link, not fill its target.
func checkDest(dest string) error {
	fi, err := os.Lstat(dest)
	if errors.Is(err, os.ErrNotExist) {
		parent := filepath.Dir(dest)
		if pi, err := os.Stat(parent); err != nil {
			return fmt.Errorf("destination's directory: %w", err)
		} else if !pi.IsDir() {
			return fmt.Errorf("destination's parent %s is not a directory", parent)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %w", dest, ErrDestNotEmpty)
	}
	d, err := os.Open(dest)
	if err != nil {
		return err
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("%s: %w", dest, ErrDestNotEmpty)
	}
	return nil
}

// readManifest fetches and validates the manifest, never holding more than
// MaxManifestBytes+1 of it in memory.
func readManifest(ctx context.Context, store objstore.Store, key string, opts DownloadOptions) (Manifest, entryIndex, error) {
	mkey := ManifestKey(key)
	rc, info, err := store.Get(ctx, mkey, nil)
	if objstore.IsNotFound(err) {
		return Manifest{}, nil, fmt.Errorf("artifact %s: no manifest %s; the artifact does not exist or its upload did not finish: %w", key, mkey, err)
	}
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("artifact %s: %w", key, err)
	}
	defer rc.Close()
	if info.Size > opts.MaxManifestBytes {
		return Manifest{}, nil, invalidf(key, "manifest %s is %d bytes, more than the limit of %d", mkey, info.Size, opts.MaxManifestBytes)
	}
	data, err := io.ReadAll(io.LimitReader(rc, opts.MaxManifestBytes+1))
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("artifact %s: read manifest: %w", key, err)
	}
	if int64(len(data)) > opts.MaxManifestBytes {
		return Manifest{}, nil, invalidf(key, "manifest %s is more than the limit of %d bytes", mkey, opts.MaxManifestBytes)
	}
	return parseManifest(key, data, opts.MaxEntries)
}

// fetch streams the tar into staging and checks it against m.
func fetch(ctx context.Context, store objstore.Store, key string, m *Manifest, ix entryIndex, staging string) error {
	root, err := os.OpenRoot(staging)
	if err != nil {
		return fmt.Errorf("download %s: %w", key, err)
	}
	defer root.Close()
	rc, _, err := store.Get(ctx, TarKey(key), nil)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", key, err)
	}
	defer rc.Close()

	// Reading stops one byte past the declared size: enough to tell that
	// the object is longer than the manifest says, without reading an
	// unbounded stream to find out by how much.
	body := &hashReader{r: io.LimitReader(rc, m.TarSize+1), h: sha256.New()}
	if err := unpack(ctx, key, body, root, m, ix); err != nil {
		// A tar cut short by the end of the object (not by a broken
		// connection, which fails the read itself) disagrees with the
		// manifest, or is longer than it says and was cut by the limit.
		if body.eof && errors.Is(err, io.ErrUnexpectedEOF) {
			return invalidf(key, "%s ends inside an entry after %d bytes; the manifest gives %d bytes (%v)", TarKey(key), body.n, m.TarSize, err)
		}
		return err
	}
	// The tar's end-of-archive marker need not be the object's end. Read
	// on to EOF so that the store's own checksum check runs and trailing
	// bytes count toward the size and hash compared below.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("artifact %s: read %s: %w", key, TarKey(key), err)
	}
	switch {
	case body.n > m.TarSize:
		return invalidf(key, "%s is longer than the %d bytes the manifest gives", TarKey(key), m.TarSize)
	case body.n < m.TarSize:
		return invalidf(key, "%s is %d bytes, the manifest gives %d", TarKey(key), body.n, m.TarSize)
	}
	if got := hex.EncodeToString(body.h.Sum(nil)); got != m.TarSHA256 {
		return invalidf(key, "%s has sha256 %s, the manifest gives %s", TarKey(key), got, m.TarSHA256)
	}
	if err := syncTree(root, m); err != nil {
		return fmt.Errorf("download %s: %w", key, err)
	}
	return nil
}

// syncTree makes the unpacked files and directories durable before the
// rename that publishes them. It runs once everything is verified, so a
// refused download costs no fsyncs.
func syncTree(root *os.Root, m *Manifest) error {
	for _, e := range m.Entries {
		if e.Type != TypeSymlink {
			if err := syncIn(root, e.Path); err != nil {
				return err
			}
		}
	}
	return syncIn(root, ".")
}

func syncIn(root *os.Root, name string) error {
	d, err := root.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return nil
}

// hashReader hashes and counts what is read through it, and notes a
// clean end of stream.
type hashReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	eof bool
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if err == io.EOF {
		h.eof = true
	}
	return n, err
}
