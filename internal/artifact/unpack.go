package artifact

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// unpack writes the tar read from r into root, accepting exactly the
// entries of the validated manifest m, each once, every directory before
// its contents, and nothing else.
//
// Safety does not rest on any one check. The manifest has already refused
// unsafe paths and links; each tar entry is checked again on its own,
// must match its manifest entry in type, size and link target, and must
// come after its directory; and every write goes through root, an os.Root
// on the staging directory, which refuses any path that would leave it
// even if all of the above had a hole.
func unpack(ctx context.Context, key string, r io.Reader, root *os.Root, m *Manifest, ix entryIndex) error {
	tr := tar.NewReader(r)
	seen := make([]bool, len(m.Entries))
	buf := make([]byte, 256<<10)
	count := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// ErrInsecurePath comes with a usable header when GODEBUG asks for
		// it; the checks below refuse such paths by name.
		if err != nil && !(hdr != nil && errors.Is(err, tar.ErrInsecurePath)) {
			if errors.Is(err, tar.ErrHeader) {
				return invalidf(key, "%s: %v", TarKey(key), err)
			}
			return fmt.Errorf("artifact %s: read %s: %w", key, TarKey(key), err)
		}
		i, err := match(key, hdr, m, ix, seen)
		if err != nil {
			return err
		}
		e := &m.Entries[i]
		switch e.Type {
		case TypeDir:
			err = makeDir(root, e)
		case TypeSymlink:
			err = root.Symlink(e.Link, e.Path)
		case TypeFile:
			err = writeFile(root, e, tr, buf)
		}
		if err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				ee.Key = key
				return ee
			}
			return fmt.Errorf("artifact %s: entry %q: %w", key, e.Path, err)
		}
		seen[i] = true
		count++
	}
	if count != len(m.Entries) {
		for i, ok := range seen {
			if !ok {
				return entryErr(key, m.Entries[i].Path, "is in the manifest but not in the tar")
			}
		}
	}
	return nil
}

// match finds the manifest entry for a tar header and checks that the two
// agree, returning its index.
func match(key string, hdr *tar.Header, m *Manifest, ix entryIndex, seen []bool) (int, error) {
	name := hdr.Name
	var typ EntryType
	switch hdr.Typeflag {
	case tar.TypeReg:
		typ = TypeFile
	case tar.TypeDir:
		typ, name = TypeDir, strings.TrimSuffix(name, "/")
	case tar.TypeSymlink:
		typ = TypeSymlink
	case tar.TypeLink:
		return 0, entryErr(key, hdr.Name, "hard link to %q refused: an artifact holds no hard links", hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return 0, entryErr(key, hdr.Name, "device file refused: an artifact holds only files, directories and symlinks")
	case tar.TypeFifo:
		return 0, entryErr(key, hdr.Name, "fifo refused: an artifact holds only files, directories and symlinks")
	default:
		return 0, entryErr(key, hdr.Name, "tar entry type %q refused: an artifact holds only files, directories and symlinks", hdr.Typeflag)
	}
	if err := checkPath(name); err != nil {
		return 0, entryErr(key, hdr.Name, "%v", err)
	}
	i, ok := ix[name]
	if !ok {
		return 0, entryErr(key, name, "is in the tar but not in the manifest")
	}
	if seen[i] {
		return 0, entryErr(key, name, "appears twice in the tar")
	}
	e := &m.Entries[i]
	if e.Type != typ {
		return 0, entryErr(key, name, "is a %s in the tar but a %s in the manifest", typ, e.Type)
	}
	if dir := path.Dir(name); dir != "." {
		if p, ok := ix[dir]; !ok || !seen[p] || m.Entries[p].Type != TypeDir {
			return 0, entryErr(key, name, "comes before its directory %q in the tar", dir)
		}
	}
	switch typ {
	case TypeFile:
		if hdr.Size != e.Size {
			return 0, entryErr(key, name, "is %d bytes in the tar but %d in the manifest", hdr.Size, e.Size)
		}
	case TypeSymlink:
		if hdr.Linkname != e.Link {
			return 0, entryErr(key, name, "links to %q in the tar but to %q in the manifest", hdr.Linkname, e.Link)
		}
	}
	return i, nil
}

func makeDir(root *os.Root, e *Entry) error {
	if err := root.Mkdir(e.Path, os.FileMode(ModeExec)); err != nil {
		return err
	}
	// Mkdir's mode passes through the umask; the artifact's modes do not.
	return root.Chmod(e.Path, os.FileMode(e.Mode))
}

// writeFile creates e's file, which must not exist yet (O_EXCL also
// refuses to follow a symlink in its place), and checks its content.
func writeFile(root *os.Root, e *Entry, r io.Reader, buf []byte) (err error) {
	f, err := root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	sum := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, sum), io.LimitReader(r, e.Size), buf)
	if err != nil {
		return err
	}
	if n != e.Size {
		return entryErr("", e.Path, "tar holds %d of its %d bytes", n, e.Size)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != e.SHA256 {
		return entryErr("", e.Path, "content has sha256 %s, the manifest gives %s", got, e.SHA256)
	}
	return f.Chmod(os.FileMode(e.Mode))
}
