package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// Limits on what Download will read. A manifest is parsed in memory before
// anything else happens, so both its size and its entry count are capped:
// a 16 MiB manifest of empty "{}" entries would otherwise decode into
// several million structs and hundreds of megabytes.
const (
	// DefaultMaxManifestBytes caps the size of a manifest.
	DefaultMaxManifestBytes = 16 << 20
	// DefaultMaxEntries caps the number of entries in a manifest, which
	// holds parsing and verification to a few tens of megabytes.
	DefaultMaxEntries = 250_000

	// maxPathLen and maxLinkLen are Linux's PATH_MAX: no longer path or
	// link target could be created by a tar of a real directory.
	maxPathLen = 4096
	maxLinkLen = 4096
)

// EntryType is the kind of a manifest entry.
type EntryType string

// The entry types an artifact may hold.
const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
)

// The only permissions an artifact records: files are ModeFile, or
// ModeExec when their owner could execute them, and directories are
// ModeExec. Anything else (setuid, group-writable, owner-only) is
// normalised on upload and refused in a manifest.
const (
	ModeFile Perm = 0o644
	ModeExec Perm = 0o755
)

// Perm is an entry's permission bits, written in JSON as an octal string
// such as "0644" so that a person reading the manifest sees the usual form.
type Perm uint32

// MarshalText implements encoding.TextMarshaler.
func (p Perm) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%04o", uint32(p)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Perm) UnmarshalText(b []byte) error {
	if len(b) == 0 || len(b) > 4 {
		return fmt.Errorf("mode %q is not 1 to 4 octal digits", b)
	}
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil {
		return fmt.Errorf("mode %q is not octal", b)
	}
	*p = Perm(v)
	return nil
}

// Entry describes one file, directory or symlink of an artifact.
type Entry struct {
	// Path is relative to the artifact's root, slash-separated and clean.
	Path string    `json:"path"`
	Type EntryType `json:"type"`
	// Mode is ModeFile or ModeExec for files, ModeExec for directories,
	// and absent for symlinks.
	Mode Perm `json:"mode,omitempty"`
	// Size and SHA256 (hex) describe a file's content.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	// Link is a symlink's target, relative, as the link holds it.
	Link string `json:"link,omitempty"`
}

// Manifest describes a complete artifact. Its presence in the store is what
// makes the artifact visible.
type Manifest struct {
	Version   int       `json:"version"`
	Created   time.Time `json:"created"`
	TarSize   int64     `json:"tar_size"`
	TarSHA256 string    `json:"tar_sha256"`
	// Entries are in the order of the tar: every directory before what it
	// contains.
	Entries []Entry `json:"entries"`
}

// FileBytes returns the total size of the artifact's files.
func (m *Manifest) FileBytes() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// entryIndex maps each entry's path to its position in Manifest.Entries.
type entryIndex map[string]int

// parseManifest decodes and validates a manifest read from the store under
// key, holding at most maxEntries entries.
func parseManifest(key string, data []byte, maxEntries int) (Manifest, entryIndex, error) {
	// The version is read on its own first, so that a manifest from a newer
	// ferry gets a message about versions rather than about whichever new
	// field the strict decode below meets first.
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return Manifest{}, nil, invalidf(key, "manifest is not valid JSON: %v", err)
	}
	if head.Version == nil {
		return Manifest{}, nil, invalidf(key, "manifest has no format version")
	}
	if *head.Version != FormatVersion {
		return Manifest{}, nil, invalidf(key, "manifest format version %d; this ferry reads version %d (use a ferry that matches the uploader)", *head.Version, FormatVersion)
	}
	m, err := decodeManifest(data, maxEntries)
	if err != nil {
		return Manifest{}, nil, invalidf(key, "manifest: %v", err)
	}
	ix, err := m.validate(key)
	if err != nil {
		return Manifest{}, nil, err
	}
	return m, ix, nil
}

// decodeManifest decodes strictly (no unknown or repeated fields, nothing
// after the object), counting entries as it goes so that the cap holds
// before memory is spent on them.
func decodeManifest(data []byte, maxEntries int) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '{'); err != nil {
		return m, err
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return m, err
		}
		name, _ := tok.(string)
		if seen[name] {
			return m, fmt.Errorf("field %q appears twice", name)
		}
		seen[name] = true
		switch name {
		case "version":
			err = dec.Decode(&m.Version)
		case "created":
			err = dec.Decode(&m.Created)
		case "tar_size":
			err = dec.Decode(&m.TarSize)
		case "tar_sha256":
			err = dec.Decode(&m.TarSHA256)
		case "entries":
			m.Entries, err = decodeEntries(dec, maxEntries)
		default:
			err = fmt.Errorf("unknown field %q", name)
		}
		if err != nil {
			return m, fmt.Errorf("field %q: %w", name, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return m, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return m, errors.New("data after the manifest object")
	}
	for _, f := range []string{"version", "created", "tar_size", "tar_sha256", "entries"} {
		if !seen[f] {
			return m, fmt.Errorf("field %q is missing", f)
		}
	}
	return m, nil
}

func decodeEntries(dec *json.Decoder, maxEntries int) ([]Entry, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	entries := []Entry{}
	if tok == nil {
		return entries, nil // null: no entries
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("expected an array, found %v", tok)
	}
	for dec.More() {
		if len(entries) >= maxEntries {
			return nil, fmt.Errorf("more than %d entries (raise the entry limit if this artifact is trusted)", maxEntries)
		}
		var e Entry
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("entry %d: %w", len(entries), err)
		}
		entries = append(entries, e)
	}
	return entries, expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, found %v", want, tok)
	}
	return nil
}

// validate checks every rule that keeps an artifact safe to unpack, before a
// single byte of the tar is fetched, and returns the index of its entries.
// Upload runs the same checks on what it built, so that anything it stores
// can be downloaded.
func (m *Manifest) validate(key string) (entryIndex, error) {
	if m.TarSize < 0 {
		return nil, invalidf(key, "manifest gives a negative tar size %d", m.TarSize)
	}
	if !isSHA256(m.TarSHA256) {
		return nil, invalidf(key, "manifest's tar_sha256 %q is not 64 lower-case hex digits", m.TarSHA256)
	}
	ix := make(entryIndex, len(m.Entries))
	var files int64
	for i := range m.Entries {
		e := &m.Entries[i]
		if err := checkPath(e.Path); err != nil {
			return nil, entryErr(key, e.Path, "%v", err)
		}
		if _, dup := ix[e.Path]; dup {
			return nil, entryErr(key, e.Path, "listed twice in the manifest")
		}
		if err := e.checkShape(); err != nil {
			return nil, entryErr(key, e.Path, "%v", err)
		}
		// Requiring each parent to be an earlier directory entry means no
		// path can pass through a symlink or a file: a tar that puts
		// "l/x" after a link "l" to somewhere else would otherwise write x
		// wherever l points.
		if dir := path.Dir(e.Path); dir != "." {
			p, ok := ix[dir]
			if !ok || m.Entries[p].Type != TypeDir {
				return nil, entryErr(key, e.Path, "its directory %q is not listed before it", dir)
			}
		}
		// Sizes are bounded by the tar that carries them, which caps what
		// a download can write to disk at the tar's declared size.
		if e.Size > math.MaxInt64-files || files+e.Size > m.TarSize {
			return nil, entryErr(key, e.Path, "file sizes add up to more than the tar's %d bytes", m.TarSize)
		}
		files += e.Size
		ix[e.Path] = i
	}
	if p, err := checkLinks(m.Entries, ix); err != nil {
		return nil, entryErr(key, p, "symlink to %q: %v", m.Entries[ix[p]].Link, err)
	}
	return ix, nil
}

// checkShape checks the fields that an entry of its type must and must not
// have.
func (e *Entry) checkShape() error {
	switch e.Type {
	case TypeFile:
		if e.Mode != ModeFile && e.Mode != ModeExec {
			return fmt.Errorf("file mode %04o is neither 0644 nor 0755", uint32(e.Mode))
		}
		if e.Size < 0 {
			return fmt.Errorf("negative size %d", e.Size)
		}
		if !isSHA256(e.SHA256) {
			return fmt.Errorf("sha256 %q is not 64 lower-case hex digits", e.SHA256)
		}
		if e.Link != "" {
			return errors.New("a file with a link target")
		}
	case TypeDir:
		if e.Mode != ModeExec {
			return fmt.Errorf("directory mode %04o is not 0755", uint32(e.Mode))
		}
		if e.Size != 0 || e.SHA256 != "" || e.Link != "" {
			return errors.New("a directory with a size, sha256 or link target")
		}
	case TypeSymlink:
		if e.Mode != 0 || e.Size != 0 || e.SHA256 != "" {
			return errors.New("a symlink with a mode, size or sha256")
		}
		if e.Link == "" || len(e.Link) > maxLinkLen || strings.IndexByte(e.Link, 0) >= 0 {
			return fmt.Errorf("symlink target of %d bytes is empty, too long or holds a NUL", len(e.Link))
		}
	default:
		return fmt.Errorf("type %q is not file, dir or symlink", e.Type)
	}
	return nil
}

// checkPath accepts only clean, relative, slash-separated paths below the
// root: no "", ".", "..", absolute paths, empty components or NUL bytes.
func checkPath(p string) error {
	switch {
	case p == "" || p == ".":
		return errors.New("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path of %d bytes is longer than %d", len(p), maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("path holds a NUL byte")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path")
	}
	for c := range strings.SplitSeq(p, "/") {
		switch c {
		case "":
			return errors.New("path has an empty component or a trailing slash")
		case ".":
			return errors.New("path has a '.' component")
		case "..":
			return errors.New("path has a '..' component")
		}
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
