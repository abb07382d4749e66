package s3store

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// hashBody reads u's body once, from u.start to EOF, and records in u its
// SHA-256, and for a multipart upload the SHA-256 (and, withMD5, the MD5) of
// each part. It leaves the body rewound to u.start.
//
// Every checksum comes from this one pass so that the server checks the
// bytes it receives against the bytes that were hashed: the part hashes
// become the parts' signed payload hashes, the whole-body hash the single
// PutObject's. Without them the SDK would hash each part again as it sends
// it, and a file rewritten between the two reads would go up with a
// ferry-sha256 that does not match its content, discovered only by the
// first Get.
func (s *Store) hashBody(body io.ReadSeeker, u *upload, withMD5 bool) error {
	h := &partHasher{whole: sha256.New(), partSize: u.partSize, left: u.partSize}
	if u.parts > 1 {
		h.sha = sha256.New()
	}
	if withMD5 {
		h.md5 = md5.New()
	}
	if u.size == 0 {
		h.partSize, h.left = 1, 1 // no part boundary to cross
	}
	var n int64
	var err error
	if wt, ok := body.(io.WriterTo); ok {
		// bytes.Reader and os.File bring their own buffers.
		n, err = wt.WriteTo(h)
	} else {
		buf, _ := s.hashBufs.Get().(*[]byte)
		if buf == nil {
			b := make([]byte, 256<<10)
			buf = &b
		}
		n, err = io.CopyBuffer(h, body, *buf)
		s.hashBufs.Put(buf)
	}
	if err != nil {
		return fmt.Errorf("hash body: %w", err)
	}
	if n != u.size {
		return fmt.Errorf("body changed size while being read: %d bytes, then %d", u.size, n)
	}
	if h.left != h.partSize || u.size == 0 {
		h.endPart()
	}
	if _, err := body.Seek(u.start, io.SeekStart); err != nil {
		return fmt.Errorf("rewind body: %w", err)
	}
	if len(h.md5s) != u.parts && withMD5 || len(h.shas) != u.parts && u.parts > 1 {
		return fmt.Errorf("hashed %d parts, planned %d", max(len(h.md5s), len(h.shas)), u.parts)
	}
	u.sha256 = hex.EncodeToString(h.whole.Sum(nil))
	u.partSHA256 = h.shas
	u.partMD5 = h.md5s
	return nil
}

// partHasher hashes a stream as a whole and, where asked, part by part.
type partHasher struct {
	whole    hash.Hash
	sha, md5 hash.Hash // of the current part; nil when not wanted
	partSize int64
	left     int64 // bytes until the current part ends
	shas     []string
	md5s     [][]byte
}

func (h *partHasher) Write(p []byte) (int, error) {
	h.whole.Write(p)
	n := len(p)
	if h.sha == nil && h.md5 == nil {
		return n, nil
	}
	for len(p) > 0 {
		k := min(int64(len(p)), h.left)
		if h.sha != nil {
			h.sha.Write(p[:k])
		}
		if h.md5 != nil {
			h.md5.Write(p[:k])
		}
		p = p[k:]
		h.left -= k
		if h.left == 0 {
			h.endPart()
			h.left = h.partSize
		}
	}
	return n, nil
}

func (h *partHasher) endPart() {
	if h.sha != nil {
		h.shas = append(h.shas, hex.EncodeToString(h.sha.Sum(nil)))
		h.sha.Reset()
	}
	if h.md5 != nil {
		h.md5s = append(h.md5s, h.md5.Sum(nil))
		h.md5.Reset()
	}
}
