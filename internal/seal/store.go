package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"os"
	"strings"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
)

// Errors a reader branches on. Each matches objstore.ErrKey and none
// matches objstore.ErrCorrupt: a missing or wrong key is the reader's
// mistake, not damage, and a restore must stop with it rather than plan
// around the object.
var (
	// ErrNoKey means an object is encrypted and no key was given.
	ErrNoKey error = keyError("the replica is encrypted and no key was given")
	// ErrWrongKey means an object is encrypted with a key not given.
	ErrWrongKey error = keyError("the key does not match")
	// ErrNotEncrypted means a key was given for an object stored in the
	// clear. ferry does not mix the two in one replica.
	ErrNotEncrypted error = keyError("the object is not encrypted, but a key was given")
)

type keyError string

func (e keyError) Error() string { return string(e) }
func (keyError) Unwrap() error   { return objstore.ErrKey }

// ageMagic starts every age file.
const ageMagic = "age-encryption.org/v1\n"

// sumMeta is the metadata entry that holds the plaintext's SHA-256,
// itself encrypted under the wrapping key and bound to the object's name,
// so that Head can report it (callers check an upload, or skip one that is
// already there, by it) without the bucket learning a hash that would
// confirm a guessed file.
const sumMeta = "ferry-sealed-sha256"

// inMemory is the largest object encrypted in memory; a larger one goes
// through a temporary file, since a Put may have to send the same
// ciphertext again on a retry.
const inMemory = 8 << 20

// Store encrypts what it puts and decrypts and authenticates what it gets,
// for the keys layout.Cleartext does not name. Without a ring it writes in
// the clear and refuses to read an encrypted object, so that a reader
// without the key fails with one clear line instead of parsing ciphertext.
type Store struct {
	inner   objstore.Store
	ring    *Ring
	tempDir string
}

// New returns a Store over inner. ring is nil for a replica without
// encryption. Large objects are encrypted through temporary files in
// tempDir ("" for the system's).
func New(inner objstore.Store, ring *Ring, tempDir string) *Store {
	return &Store{inner: inner, ring: ring, tempDir: tempDir}
}

func (s *Store) sealed(key string) bool { return s.ring != nil && !layout.Cleartext(key) }

// Put implements objstore.Store. The Info it returns gives the plaintext's
// size, and its SHA-256 when opts gave it.
func (s *Store) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if !s.sealed(key) {
		return s.inner.Put(ctx, key, body, opts)
	}
	w := s.ring.write
	if w == nil {
		return objstore.Info{}, fmt.Errorf("put %s: only read-only keys were given", key)
	}
	size, err := objstore.BodySize(body)
	if err != nil {
		return objstore.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	cipher, cleanup, err := s.buffer(size)
	if err != nil {
		return objstore.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer cleanup()
	// The ciphertext is hashed as it is written, so the store need not
	// read it again to hash it before sending.
	cipherSum := sha256.New()
	enc, err := age.Encrypt(io.MultiWriter(cipher, cipherSum), recipient{key: w, name: key})
	if err != nil {
		return objstore.Info{}, fmt.Errorf("put %s: encrypt: %w", key, err)
	}
	n, err := io.Copy(enc, body)
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		return objstore.Info{}, fmt.Errorf("put %s: encrypt: %w", key, err)
	}
	if n != size {
		return objstore.Info{}, fmt.Errorf("put %s: the body changed size while read: %d bytes, then %d", key, size, n)
	}
	if _, err := cipher.Seek(0, io.SeekStart); err != nil {
		return objstore.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	plainSum := opts.SHA256
	opts.SHA256 = hex.EncodeToString(cipherSum.Sum(nil))
	if plainSum != "" {
		// A caller that knows the plaintext's hash checks uploads by it
		// (Head gives it back); one that does not, has no use for it.
		opts.Metadata = maps.Clone(opts.Metadata)
		if opts.Metadata == nil {
			opts.Metadata = map[string]string{}
		}
		if opts.Metadata[sumMeta], err = sealSum(w, key, plainSum); err != nil {
			return objstore.Info{}, fmt.Errorf("put %s: %w", key, err)
		}
	}
	info, err := s.inner.Put(ctx, key, cipher, opts)
	if err != nil {
		return info, err
	}
	info.Size, info.SHA256 = size, plainSum
	return info, nil
}

// cipherBuffer is where one object's ciphertext waits to be sent.
type cipherBuffer interface {
	io.Writer
	io.ReadSeeker
}

// buffer returns a place for the ciphertext of a body of size bytes, in
// memory or in a temporary file, and what removes it.
func (s *Store) buffer(size int64) (cipherBuffer, func(), error) {
	if size <= inMemory {
		return &memBuffer{}, func() {}, nil
	}
	f, err := os.CreateTemp(s.tempDir, ".ferry-seal-*")
	if err != nil {
		return nil, nil, fmt.Errorf("temporary file for the ciphertext: %w", err)
	}
	return f, func() { f.Close(); os.Remove(f.Name()) }, nil
}

// memBuffer is a bytes.Buffer that can be read from its start again.
type memBuffer struct {
	b []byte
	r *bytes.Reader
}

func (m *memBuffer) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }

func (m *memBuffer) Read(p []byte) (int, error) {
	if m.r == nil {
		m.r = bytes.NewReader(m.b)
	}
	return m.r.Read(p)
}

func (m *memBuffer) Seek(off int64, whence int) (int64, error) {
	if m.r == nil {
		m.r = bytes.NewReader(m.b)
	}
	return m.r.Seek(off, whence)
}

// Get implements objstore.Store. An encrypted object is always fetched
// whole and authenticated as it streams; a range is cut from the
// plaintext.
func (s *Store) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if layout.Cleartext(key) {
		return s.inner.Get(ctx, key, rng)
	}
	if s.ring == nil && rng != nil && rng.Offset > 0 {
		// Past the start nothing tells ciphertext from plaintext; every
		// reader of a replica reads its objects from the start first.
		return s.inner.Get(ctx, key, rng)
	}
	inner := rng
	if s.ring != nil {
		inner = cipherRange(rng)
	}
	rc, info, err := s.inner.Get(ctx, key, inner)
	if err != nil {
		return nil, info, err
	}
	src := &watchedReader{rc: rc}
	head := make([]byte, len(ageMagic))
	hn, _ := io.ReadFull(src, head)
	head = head[:hn]
	encrypted := string(head) == ageMagic
	br := io.MultiReader(bytes.NewReader(head), src)
	if !encrypted && src.err != nil && !errors.Is(src.err, io.EOF) {
		rc.Close()
		return nil, info, src.err
	}
	switch {
	case !encrypted && s.ring == nil:
		return readCloser{br, rc}, info, nil
	case !encrypted:
		rc.Close()
		return nil, info, &objstore.Error{Op: "get", Key: key, Err: fmt.Errorf("%w: a replica with encryption on holds only encrypted objects; if it was written without encryption, read it without a key", ErrNotEncrypted)}
	}
	if s.ring == nil {
		// The object may be cut short by a range: name its key from the
		// stanza line rather than parse the whole header.
		start := make([]byte, 256)
		n, _ := io.ReadFull(br, start)
		rc.Close()
		return nil, info, &objstore.Error{Op: "get", Key: key, Err: fmt.Errorf("%w (it is encrypted with key %s); give the key file", ErrNoKey, stanzaKeyID(start[:n]))}
	}
	id := &identity{ring: s.ring, name: key}
	plain, err := age.Decrypt(br, id)
	if err != nil {
		rc.Close()
		return nil, info, s.openError(key, id, src, err)
	}
	if rng == nil {
		info.Size = PlainSize(info.Size)
	}
	info.SHA256 = s.openSum(key, info.Metadata[sumMeta])
	var r io.Reader = &authReader{r: plain, src: src, key: key}
	if rng != nil {
		if _, err := io.CopyN(io.Discard, r, rng.Offset); err != nil {
			rc.Close()
			return nil, info, fmt.Errorf("get %s: skip to offset %d: %w", key, rng.Offset, err)
		}
		if rng.Length >= 0 {
			r = io.LimitReader(r, rng.Length)
		}
	}
	return readCloser{r, rc}, info, nil
}

// openError explains why the object called key did not open.
func (s *Store) openError(key string, id *identity, src *watchedReader, err error) error {
	if src.err != nil && !errors.Is(src.err, io.EOF) {
		return src.err // the store failed mid-read; that is no fault of the object
	}
	var nomatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nomatch) && len(id.met) > 0:
		return &objstore.Error{Op: "get", Key: key, Err: fmt.Errorf("%w: it is encrypted with key %s, not one of the keys given (%s)", ErrWrongKey, strings.Join(id.met, ", "), strings.Join(s.ring.IDs(), ", "))}
	}
	return &objstore.Error{Op: "get", Key: key, Err: fmt.Errorf("%w: does not decrypt: %v", objstore.ErrCorrupt, err)}
}

// watchedReader remembers the last error of the store's reader, to tell
// a failing store from a damaged object.
type watchedReader struct {
	rc  io.ReadCloser
	err error
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.rc.Read(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// authReader turns a failure to authenticate the payload into ErrCorrupt
// naming the object.
type authReader struct {
	r   io.Reader
	src *watchedReader
	key string
}

func (a *authReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		if a.src.err != nil && !errors.Is(a.src.err, io.EOF) {
			return n, a.src.err
		}
		return n, &objstore.Error{Op: "get", Key: a.key, Err: fmt.Errorf("%w: its ciphertext does not authenticate: altered or damaged", objstore.ErrCorrupt)}
	}
	return n, err
}

type readCloser struct {
	io.Reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }

// Head implements objstore.Store. For an encrypted object it reports the
// plaintext's size and SHA-256.
func (s *Store) Head(ctx context.Context, key string) (objstore.Info, error) {
	info, err := s.inner.Head(ctx, key)
	if err != nil || !s.sealed(key) {
		return info, err
	}
	info.Size = PlainSize(info.Size)
	info.SHA256 = s.openSum(key, info.Metadata[sumMeta])
	return info, nil
}

// List implements objstore.Store. Sizes in a listing are the plaintexts'.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	if s.ring == nil {
		return s.inner.List(ctx, prefix)
	}
	return func(yield func(objstore.Info, error) bool) {
		for info, err := range s.inner.List(ctx, prefix) {
			if err == nil && !layout.Cleartext(info.Key) {
				info.Size = PlainSize(info.Size)
				info.SHA256 = ""
			}
			if !yield(info, err) {
				return
			}
		}
	}
}

// openSum returns the plaintext SHA-256 that sumMeta holds, "" when it
// does not open.
func (s *Store) openSum(key, sealed string) string {
	b, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil || len(b) < 8 {
		return ""
	}
	k := s.ring.byID([8]byte(b[:8]))
	if k == nil {
		return ""
	}
	aead, err := chacha20poly1305.NewX(k.wrap[:])
	if err != nil || len(b) < 8+aead.NonceSize() {
		return ""
	}
	n := 8 + aead.NonceSize()
	sum, err := aead.Open(nil, b[8:n], b[n:], sumAD(k.id, key))
	if err != nil {
		return ""
	}
	return hex.EncodeToString(sum)
}

// sealSum encrypts a plaintext's SHA-256 for sumMeta: key id, nonce,
// ciphertext, in unpadded base64.
func sealSum(k *Key, key string, hexSum string) (string, error) {
	sum, err := hex.DecodeString(hexSum)
	if err != nil || len(sum) != sha256.Size {
		return "", fmt.Errorf("the SHA-256 given for the body, %q, is not 64 hex digits", hexSum)
	}
	aead, err := chacha20poly1305.NewX(k.wrap[:])
	if err != nil {
		return "", err
	}
	b := append(k.id[:], make([]byte, aead.NonceSize())...)
	if _, err := rand.Read(b[8:]); err != nil {
		return "", err
	}
	b = aead.Seal(b, b[8:], sum, sumAD(k.id, key))
	return base64.RawStdEncoding.EncodeToString(b), nil
}

func sumAD(id [8]byte, name string) []byte {
	return fmt.Appendf(nil, "ferry object sha256 v1\x00%x\x00%s", id, name)
}

// cipherRange returns the range of ciphertext that holds the plaintext
// range rng from the object's start: the header and every whole STREAM
// chunk up to rng's end, each of which authenticates on its own. A read
// of a manifest's or a change set's header then costs one chunk, not the
// whole object. A range to the end, or the whole object, is asked for as
// the range from 0 to the end: a store
// checks a whole object against the checksum recorded at the put, a pass
// of SHA-256 over every byte that the AEAD, which authenticates every
// byte, makes redundant.
func cipherRange(rng *objstore.Range) *objstore.Range {
	if rng == nil || rng.Length < 0 {
		return &objstore.Range{Offset: 0, Length: -1}
	}
	chunks := max((rng.Offset+rng.Length+streamChunk-1)/streamChunk, 1)
	return &objstore.Range{Offset: 0, Length: headerSize + nonceSize + chunks*(streamChunk+tagSize)}
}

// The sizes of the parts of an object this package writes: the age header
// with one ferry stanza (always the same length), the payload nonce, and a
// tag per 64 KiB chunk of plaintext.
const (
	headerSize  = 173
	nonceSize   = 16
	streamChunk = 64 << 10
	tagSize     = 16
)

// PlainSize returns the plaintext size of an object this package stored
// in stored bytes: every part of the format but the plaintext has a fixed
// length, so a listing can show true sizes without reading a byte.
func PlainSize(stored int64) int64 {
	payload := stored - headerSize - nonceSize
	if payload < tagSize {
		return stored // not one of ours; its reader will say so
	}
	chunks := (payload + streamChunk + tagSize - 1) / (streamChunk + tagSize)
	return payload - chunks*tagSize
}

// Delete implements objstore.Store.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	return s.inner.Delete(ctx, keys...)
}

// Raw returns the store under s when s is a Store, and s otherwise: the
// way to store an object that was sealed already (Encrypt), as it is.
func Raw(s objstore.Store) objstore.Store {
	if ss, ok := s.(*Store); ok {
		return ss.inner
	}
	return s
}

// Encrypt writes src, encrypted with ring's write key for the object
// called name, to dst: the bytes Put would store. An object sealed ahead
// like this is stored through Raw, for example after waiting in a spool
// that a process without the key drains.
func Encrypt(ring *Ring, name string, dst io.Writer, src io.Reader) error {
	if ring == nil || ring.write == nil {
		return fmt.Errorf("encrypt %s: no write key", name)
	}
	enc, err := age.Encrypt(dst, recipient{key: ring.write, name: name})
	if err != nil {
		return fmt.Errorf("encrypt %s: %w", name, err)
	}
	if _, err := io.Copy(enc, src); err != nil {
		return fmt.Errorf("encrypt %s: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encrypt %s: %w", name, err)
	}
	return nil
}

// stanzaKeyID returns the key id that the ferry stanza in the start of an
// age header names, "unknown" when there is none.
func stanzaKeyID(head []byte) string {
	for line := range strings.Lines(string(head)) {
		if id, ok := strings.CutPrefix(line, "-> "+stanzaType+" "); ok {
			return strings.TrimSpace(id)
		}
	}
	return "unknown"
}
