package objstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// MetaSHA256 is the user-metadata key under which backends that have no
// native place for it record the hex SHA-256 of an object's content.
const MetaSHA256 = "ferry-sha256"

// HashBody returns the hex SHA-256 and length of body from its current
// offset to EOF, and rewinds it to that offset so it can be sent.
func HashBody(body io.ReadSeeker) (sum string, size int64, err error) {
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", 0, fmt.Errorf("locate body: %w", err)
	}
	h := sha256.New()
	size, err = io.Copy(h, body)
	if err != nil {
		return "", 0, fmt.Errorf("hash body: %w", err)
	}
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("rewind body: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// BodySize returns the number of bytes from body's current offset to EOF
// without reading them.
func BodySize(body io.ReadSeeker) (int64, error) {
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, fmt.Errorf("locate body: %w", err)
	}
	end, err := body.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size body: %w", err)
	}
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		return 0, fmt.Errorf("rewind body: %w", err)
	}
	return end - start, nil
}

// VerifyReader wraps a whole-object stream and fails the read that reaches
// EOF with ErrCorrupt when the bytes seen differ in length or SHA-256 from
// what was recorded at Put. An empty wantSHA256 checks the length only: an
// object written by another tool has no recorded checksum.
//
// The check sits at EOF because that is the first moment it can be made;
// callers must therefore treat data as untrusted until they have read to
// EOF without error, which every ferry reader does before using an object.
func VerifyReader(rc io.ReadCloser, key string, wantSize int64, wantSHA256 string) io.ReadCloser {
	v := &verifyReader{rc: rc, key: key, want: wantSize, wantSum: wantSHA256}
	if wantSHA256 != "" {
		// Hashing costs as much as the rest of a fast read: only when
		// there is a sum to check.
		v.h = sha256.New()
	}
	return v
}

type verifyReader struct {
	rc      io.ReadCloser
	key     string
	want    int64
	wantSum string
	h       hash.Hash
	n       int64
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	v.n += int64(n)
	if v.want >= 0 && v.n > v.want {
		return n, &Error{Op: "get", Key: v.key, Err: fmt.Errorf("%w: more than the recorded %d bytes", ErrCorrupt, v.want)}
	}
	if err == io.EOF {
		if v.want >= 0 && v.n != v.want {
			return n, &Error{Op: "get", Key: v.key, Err: fmt.Errorf("%w: got %d bytes, recorded %d", ErrCorrupt, v.n, v.want)}
		}
		if v.wantSum != "" {
			if got := hex.EncodeToString(v.h.Sum(nil)); got != v.wantSum {
				return n, &Error{Op: "get", Key: v.key, Err: fmt.Errorf("%w: sha256 %s, recorded %s", ErrCorrupt, got, v.wantSum)}
			}
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }

// Bounds turns a Range into the byte offsets [start, end) of an object of
// the given size, failing for a range that starts past the end.
func Bounds(rng Range, size int64) (start, end int64, err error) {
	if rng.Offset < 0 || rng.Offset > size || (rng.Offset == size && size > 0) {
		return 0, 0, fmt.Errorf("range offset %d outside object of %d bytes", rng.Offset, size)
	}
	end = size
	if rng.Length >= 0 && rng.Offset+rng.Length < size {
		end = rng.Offset + rng.Length
	}
	return rng.Offset, end, nil
}
