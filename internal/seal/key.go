package seal

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/snapshot"
)

// keyPrefix starts the one line of a key file that holds the secret. The
// version in it lets a later format be told apart.
const keyPrefix = "ferry-key-1:"

// Key is one secret and what derives from it. Its String never shows the
// secret.
type Key struct {
	id    [8]byte
	wrap  [32]byte
	addrs *snapshot.HMAC
}

// newKey derives a key's parts from its secret.
func newKey(secret []byte) (*Key, error) {
	derive := func(label string, n int) ([]byte, error) {
		return hkdf.Key(sha256.New, secret, nil, "ferry "+label, n)
	}
	id, err := derive("key id", 8)
	if err != nil {
		return nil, err
	}
	wrap, err := derive("object key wrap", 32)
	if err != nil {
		return nil, err
	}
	mac, err := derive("chunk address", 32)
	if err != nil {
		return nil, err
	}
	k := &Key{id: [8]byte(id), wrap: [32]byte(wrap)}
	// A manifest's address key is never 0 (0 means "no key"), so the one
	// key in four billion whose id starts with four zero bytes takes 1.
	tag := binary.BigEndian.Uint32(id)
	if tag == 0 {
		tag = 1
	}
	k.addrs = snapshot.NewHMAC([32]byte(mac), tag)
	return k, nil
}

// ID returns the key id in hex: what messages name a key by.
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

// String returns "key <id>". It has a value receiver, and GoString too,
// so that no verb of package fmt prints a key's secret parts, whether it
// is given a Key or a *Key.
func (k Key) String() string { return "key " + hex.EncodeToString(k.id[:]) }

// GoString implements fmt.GoStringer, for %#v.
func (k Key) GoString() string { return k.String() }

// Generate returns the text of a new key file and the new key's id.
func Generate(now time.Time) (text string, id string, err error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", "", fmt.Errorf("read random bytes: %w", err)
	}
	k, err := newKey(secret)
	if err != nil {
		return "", "", err
	}
	text = fmt.Sprintf("# ferry encryption key %s, made %s.\n"+
		"# Whoever holds this file can read every replica it encrypts; without it\n"+
		"# nobody can, ferry included. Keep a copy away from the bucket.\n"+
		"%s%s\n", k.ID(), now.UTC().Format(time.RFC3339), keyPrefix, base64.RawURLEncoding.EncodeToString(secret))
	return text, k.ID(), nil
}

// ParseKey reads the text of a key file: comment lines starting with #,
// blank lines, and exactly one key line.
func ParseKey(text []byte) (*Key, error) {
	var secret []byte
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		enc, ok := strings.CutPrefix(line, keyPrefix)
		if !ok {
			return nil, errors.New("not a ferry key file: a line is neither a comment nor a key (make one with 'ferry keygen')")
		}
		if secret != nil {
			return nil, errors.New("more than one key; a key file holds one")
		}
		b, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil || len(b) != 32 {
			return nil, errors.New("the key line is damaged: not 32 bytes of base64")
		}
		secret = b
	}
	if secret == nil {
		return nil, errors.New("no key in it (make one with 'ferry keygen')")
	}
	return newKey(secret)
}

// LoadKeyFile reads the key file at path. A file that the group or others
// may read is refused: the key is the only thing between the bucket's
// operator and the data. Errors name the file, never its content.
func LoadKeyFile(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o lets others read it; run chmod 600 %s", path, perm, path)
	}
	text, err := readSmall(f, 4096)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	k, err := ParseKey(text)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

func readSmall(f *os.File, limit int) ([]byte, error) {
	b := make([]byte, limit+1)
	n, err := f.Read(b)
	if n > limit {
		return nil, fmt.Errorf("longer than %d bytes: not a key file", limit)
	}
	if n == 0 && err != nil {
		return nil, err
	}
	return b[:n], nil
}

// Ring is the keys of one replica: the one new objects are written with,
// and read-only ones that older objects may need.
type Ring struct {
	write *Key
	all   []*Key // write first
}

// NewRing returns a ring that writes with write and reads with write and
// readOnly. write may be nil for a ring that only reads.
func NewRing(write *Key, readOnly ...*Key) (*Ring, error) {
	r := &Ring{write: write}
	seen := map[[8]byte]bool{}
	for _, k := range append([]*Key{write}, readOnly...) {
		if k == nil {
			continue
		}
		if seen[k.id] {
			return nil, fmt.Errorf("%s is given twice", k)
		}
		seen[k.id] = true
		r.all = append(r.all, k)
	}
	if len(r.all) == 0 {
		return nil, errors.New("no keys")
	}
	return r, nil
}

// Write returns the key new objects are written with, nil for a ring
// that only reads.
func (r *Ring) Write() *Key { return r.write }

// IDs returns the ids of every key, the write key first.
func (r *Ring) IDs() []string {
	ids := make([]string, len(r.all))
	for i, k := range r.all {
		ids[i] = k.ID()
	}
	return ids
}

func (r *Ring) byID(id [8]byte) *Key {
	for _, k := range r.all {
		if k.id == id {
			return k
		}
	}
	return nil
}

// Addresser returns the chunk addresser a new snapshot names its chunks
// with: the write key's, or SHA-256 for a nil ring (no encryption).
func (r *Ring) Addresser() snapshot.Addresser {
	if r == nil || r.write == nil {
		return snapshot.SHA256{}
	}
	return r.write.addrs
}

// KeyAddresser implements snapshot.Keys: the addresser of the key whose
// manifests record tag.
func (r *Ring) KeyAddresser(tag uint32) (snapshot.Addresser, error) {
	for _, k := range r.all {
		if k.addrs.KeyTag() == tag {
			return k.addrs, nil
		}
	}
	return nil, fmt.Errorf("%w: its chunks are named with a key whose id starts %08x, not one of the keys given (%s)",
		ErrWrongKey, tag, strings.Join(r.IDs(), ", "))
}

// Addressers implements snapshot.Keys.
func (r *Ring) Addressers() []snapshot.Addresser {
	out := make([]snapshot.Addresser, len(r.all))
	for i, k := range r.all {
		out[i] = k.addrs
	}
	return out
}

// Keys returns r as snapshot.Keys, and a nil interface for a nil ring: a
// nil *Ring in the interface would look like keys to a nil check.
func (r *Ring) Keys() snapshot.Keys {
	if r == nil {
		return nil
	}
	return r
}
