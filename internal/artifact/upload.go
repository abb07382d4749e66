package artifact

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// UploadOptions tune Upload. The zero value is ready to use.
type UploadOptions struct {
	// TempDir is where the tar is built before it is sent; it needs room
	// for the whole tar. Empty means os.TempDir().
	TempDir string
	// MaxEntries and MaxManifestBytes make Upload refuse a directory whose
	// artifact Download would refuse with the same limits, rather than
	// store something nobody can fetch. Zero means DefaultMaxEntries and
	// DefaultMaxManifestBytes.
	MaxEntries       int
	MaxManifestBytes int64
}

func (o UploadOptions) withDefaults() UploadOptions {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxManifestBytes <= 0 {
		o.MaxManifestBytes = DefaultMaxManifestBytes
	}
	return o
}

// Upload stores the directory dir as the artifact key: KEY.tar first, then
// KEY.manifest.json, whose presence marks the artifact complete. It holds
// regular files, directories and symlinks; a symlink that leads outside dir,
// or a socket, device or fifo, is an error naming it, since leaving it out
// would make the artifact silently differ from the directory.
//
// Uploading over an existing artifact first deletes its manifest, so that
// while the new tar is on its way readers find no artifact rather than an
// old manifest paired with a new tar (which Download would refuse, but as a
// checksum mismatch that looks like corruption). Two writers on one key
// must be kept apart by a lease: see UploadWithLease.
func Upload(ctx context.Context, store objstore.Store, key, dir string, opts UploadOptions) (Manifest, error) {
	return upload(ctx, store, key, dir, opts, nil)
}

// upload is Upload with a hook that runs after the tar is stored and before
// the manifest is written: the last moment a round can still be called off
// without a trace.
func upload(ctx context.Context, store objstore.Store, key, dir string, opts UploadOptions, beforeCommit func(context.Context) error) (Manifest, error) {
	if err := checkKey(key); err != nil {
		return Manifest{}, err
	}
	opts = opts.withDefaults()
	tmp, err := os.CreateTemp(opts.TempDir, "ferry-artifact-*.tar")
	if err != nil {
		return Manifest{}, fmt.Errorf("upload %s: create temporary tar: %w", dir, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()

	m, err := buildTar(ctx, key, dir, tmp, opts.MaxEntries)
	if err != nil {
		return Manifest{}, fmt.Errorf("upload %s: %w", dir, err)
	}
	data, err := json.Marshal(&m)
	if err != nil {
		return Manifest{}, fmt.Errorf("upload %s: encode manifest: %w", dir, err)
	}
	data = append(data, '\n')
	if int64(len(data)) > opts.MaxManifestBytes {
		return Manifest{}, fmt.Errorf("upload %s: its manifest would be %d bytes, more than the %d a download accepts", dir, len(data), opts.MaxManifestBytes)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, fmt.Errorf("upload %s: rewind temporary tar: %w", dir, err)
	}

	if err := store.Delete(ctx, ManifestKey(key)); err != nil {
		return Manifest{}, fmt.Errorf("upload %s: remove the previous manifest: %w", dir, err)
	}
	if _, err := store.Put(ctx, TarKey(key), tmp, objstore.PutOptions{SHA256: m.TarSHA256}); err != nil {
		return Manifest{}, fmt.Errorf("upload %s: %w", dir, err)
	}
	if beforeCommit != nil {
		if err := beforeCommit(ctx); err != nil {
			return Manifest{}, fmt.Errorf("upload %s: %w", dir, err)
		}
	}
	if _, err := store.Put(ctx, ManifestKey(key), bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		return Manifest{}, fmt.Errorf("upload %s: %w", dir, err)
	}
	return m, nil
}

// buildTar writes dir as a tar to tmp and returns its manifest. It reads dir
// through an os.Root, so that a symlink swapped in while the walk runs
// cannot make it read a file outside dir.
func buildTar(ctx context.Context, key, dir string, tmp *os.File, maxEntries int) (Manifest, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Manifest{}, err
	}
	defer root.Close()
	tmpInfo, err := tmp.Stat()
	if err != nil {
		return Manifest{}, err
	}

	sum := sha256.New()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	cw := &countWriter{w: io.MultiWriter(bw, sum)}
	tw := tar.NewWriter(cw)
	b := &builder{ctx: ctx, root: root, dir: dir, tw: tw, tmpInfo: tmpInfo, buf: make([]byte, 256<<10), entries: []Entry{}}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(dir, filepath.FromSlash(p)), err)
		}
		if p == "." {
			return nil
		}
		if len(b.entries) >= maxEntries {
			return fmt.Errorf("more than %d entries, the most a download accepts", maxEntries)
		}
		return b.add(p, d)
	})
	if err != nil {
		return Manifest{}, err
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("write temporary tar: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return Manifest{}, fmt.Errorf("write temporary tar: %w", err)
	}
	m := Manifest{
		Version:   FormatVersion,
		Created:   time.Now().UTC(),
		TarSize:   cw.n,
		TarSHA256: hex.EncodeToString(sum.Sum(nil)),
		Entries:   b.entries,
	}
	// The same checks a download makes: they catch symlinks that lead out
	// of dir, here, where the operator can still fix them.
	if _, err := m.validate(key); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// builder adds one directory entry at a time to a tar and its manifest.
type builder struct {
	ctx     context.Context
	root    *os.Root
	dir     string
	tw      *tar.Writer
	tmpInfo os.FileInfo
	buf     []byte
	entries []Entry
}

func (b *builder) add(p string, d fs.DirEntry) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	full := filepath.Join(b.dir, filepath.FromSlash(p))
	switch t := d.Type(); {
	case t.IsDir():
		b.entries = append(b.entries, Entry{Path: p, Type: TypeDir, Mode: ModeExec})
		return b.header(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: int64(ModeExec)})
	case t&fs.ModeSymlink != 0:
		target, err := b.root.Readlink(p)
		if err != nil {
			return fmt.Errorf("read symlink %s: %w", full, err)
		}
		b.entries = append(b.entries, Entry{Path: p, Type: TypeSymlink, Link: target})
		return b.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777})
	case t.IsRegular():
		return b.addFile(p, full)
	default:
		return fmt.Errorf("%s is a %s; an artifact holds only regular files, directories and symlinks", full, kindOf(t))
	}
}

func (b *builder) addFile(p, full string) error {
	f, err := b.root.Open(p)
	if err != nil {
		return fmt.Errorf("open %s: %w", full, err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", full, err)
	}
	if !before.Mode().IsRegular() {
		return fmt.Errorf("%s changed type while the directory was read", full)
	}
	// A temporary directory inside the uploaded one would put the tar into
	// itself, growing as it is read.
	if os.SameFile(before, b.tmpInfo) {
		return fmt.Errorf("the temporary tar %s is inside the directory being uploaded; choose a temporary directory outside it", full)
	}
	mode := ModeFile
	if before.Mode().Perm()&0o100 != 0 {
		mode = ModeExec
	}
	size := before.Size()
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p, Size: size, Mode: int64(mode), ModTime: before.ModTime().Truncate(time.Second)}
	if err := b.header(hdr); err != nil {
		return err
	}
	sum := sha256.New()
	n, err := io.CopyBuffer(b.tw, io.TeeReader(ctxReader{b.ctx, io.LimitReader(f, size)}, sum), b.buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", full, err)
	}
	after, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", full, err)
	}
	// A file written to while it is read would be stored as a mix of old
	// and new bytes that never existed on disk together.
	if n != size || after.Size() != size || !after.ModTime().Equal(before.ModTime()) {
		return fmt.Errorf("%s changed while it was read; upload again once it is stable", full)
	}
	b.entries = append(b.entries, Entry{Path: p, Type: TypeFile, Mode: mode, Size: size, SHA256: hex.EncodeToString(sum.Sum(nil))})
	return nil
}

func (b *builder) header(h *tar.Header) error {
	h.Format = tar.FormatPAX
	if err := b.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write temporary tar: %s: %w", h.Name, err)
	}
	return nil
}

func kindOf(t fs.FileMode) string {
	switch {
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeNamedPipe != 0:
		return "fifo"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + t.String() + ")"
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
