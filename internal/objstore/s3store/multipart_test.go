package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
)

// seqReader hides every method of a bytes.Reader but Read and Seek, so that
// Put has to read the parts in order into its own buffers.
type seqReader struct{ r *bytes.Reader }

func (s seqReader) Read(p []byte) (int, error)                { return s.r.Read(p) }
func (s seqReader) Seek(off int64, whence int) (int64, error) { return s.r.Seek(off, whence) }

// failingBody reads normally with Read, so that hashing succeeds, and fails
// ReadAt from failAt on, as a disk error in the middle of an upload would.
type failingBody struct {
	*bytes.Reader
	failAt int64
}

var errDisk = errors.New("simulated disk error")

func (f failingBody) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.failAt {
		return 0, errDisk
	}
	return f.Reader.ReadAt(p, off)
}

// cancelBody cancels the upload's context the first time a part beyond the
// first is read, as a shutdown in the middle of an upload would.
type cancelBody struct {
	*bytes.Reader
	cancel  context.CancelFunc
	partEnd int64
	reads   atomic.Int32
}

func (c *cancelBody) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.partEnd && c.reads.Add(1) == 1 {
		c.cancel()
	}
	return c.Reader.ReadAt(p, off)
}

func TestMultipart(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		for _, md5 := range []bool{false, true} {
			s := srv.newStoreWith(t, func(c *Config) { c.ContentMD5 = md5 })
			// Three full parts and a short one, read at offsets
			// (bytes.Reader) and in order (seqReader), starting from a
			// non-zero offset.
			body := randomBytes(3*MinPartSize + 1234)
			for name, r := range map[string]io.ReadSeeker{
				"readerat":   bytes.NewReader(append([]byte("skip"), body...)),
				"sequential": seqReader{bytes.NewReader(append([]byte("skip"), body...))},
			} {
				if _, err := r.Seek(4, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				put, err := s.Put(context.Background(), name, r, objstore.PutOptions{Metadata: map[string]string{"kind": name}})
				if err != nil {
					t.Fatalf("md5 %v, %s: %v", md5, name, err)
				}
				if !strings.HasSuffix(strings.Trim(put.ETag, `"`), "-4") {
					t.Errorf("md5 %v, %s: etag %s is not that of a 4-part upload", md5, name, put.ETag)
				}
				got, info, err := readAll(t, s, name, nil)
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("md5 %v, %s: read back %d bytes, %v", md5, name, len(got), err)
				}
				if info.SHA256 != put.SHA256 || info.Metadata["kind"] != name {
					t.Errorf("md5 %v, %s: info %+v after put %+v", md5, name, info, put)
				}
			}
			// The caller's SHA-256 spares the hashing pass; the parts then
			// go up with hashes the SDK computes.
			put, err := s.Put(context.Background(), "given-sha", bytes.NewReader(body), objstore.PutOptions{SHA256: mustHash(body)})
			if err != nil {
				t.Fatal(err)
			}
			if got, _, err := readAll(t, s, "given-sha", nil); err != nil || !bytes.Equal(got, body) || put.SHA256 != mustHash(body) {
				t.Fatalf("md5 %v, given sha256: read back %d bytes, %v", md5, len(got), err)
			}
			if len(s.bufs) != 0 {
				t.Errorf("%d part buffers still held", len(s.bufs))
			}
		}
	})
}

// A threshold below the part size makes bodies in between go up as a
// single part.
func TestMultipartOnePart(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStoreWith(t, func(c *Config) { c.PartSize = 2 * MinPartSize })
		body := randomBytes(MinPartSize + 10)
		put := mustPut(t, s, "obj", body, objstore.PutOptions{})
		if !strings.HasSuffix(strings.Trim(put.ETag, `"`), "-1") {
			t.Errorf("etag %s is not that of a 1-part upload", put.ETag)
		}
		if got, _, err := readAll(t, s, "obj", nil); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("read back %d bytes, %v", len(got), err)
		}
	})
}

func mustHash(b []byte) string {
	sum, _, err := objstore.HashBody(bytes.NewReader(b))
	if err != nil {
		panic(err)
	}
	return sum
}

func TestMultipartAbortsOnReadError(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStore(t)
		body := failingBody{bytes.NewReader(randomBytes(3 * MinPartSize)), MinPartSize}
		_, err := s.Put(context.Background(), "obj", body, objstore.PutOptions{})
		wantErr(t, err, errDisk)
		var oe *objstore.Error
		if !errors.As(err, &oe) || oe.Key != "obj" {
			t.Errorf("error %#v is not an *objstore.Error naming the key", err)
		}
		if ups := incompleteUploads(t, s); len(ups) != 0 {
			t.Errorf("%d incomplete uploads left behind", len(ups))
		}
		_, err = s.Head(context.Background(), "obj")
		wantErr(t, err, objstore.ErrNotFound)
	})
}

func TestMultipartAbortsOnCancel(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		body := &cancelBody{Reader: bytes.NewReader(randomBytes(4 * MinPartSize)), cancel: cancel, partEnd: MinPartSize}
		_, err := s.Put(ctx, "obj", body, objstore.PutOptions{})
		wantErr(t, err, context.Canceled)
		if objstore.Transient(err) {
			t.Errorf("a cancelled put is reported as transient: %v", err)
		}
		if ups := incompleteUploads(t, s); len(ups) != 0 {
			t.Errorf("%d incomplete uploads left behind", len(ups))
		}
	})
}

func TestMultipartConditional(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStore(t)
		body := randomBytes(MinPartSize + 1)
		first := mustPut(t, s, "obj", body, objstore.PutOptions{IfNoneMatch: true})
		_, err := s.Put(context.Background(), "obj", bytes.NewReader(body), objstore.PutOptions{IfNoneMatch: true})
		if srv.name == "gofakes3" {
			// gofakes3 ignores conditions on CompleteMultipartUpload.
			t.Logf("create-only multipart put over an existing key on gofakes3: %v", err)
			return
		}
		wantErr(t, err, objstore.ErrPreconditionFailed)
		_, err = s.Put(context.Background(), "obj", bytes.NewReader(body), objstore.PutOptions{IfMatch: `"0123"`})
		wantErr(t, err, objstore.ErrPreconditionFailed)
		mustPut(t, s, "obj", body, objstore.PutOptions{IfMatch: first.ETag})
		if ups := incompleteUploads(t, s); len(ups) != 0 {
			t.Errorf("%d incomplete uploads left behind", len(ups))
		}
	})
}

// changingBody is a file rewritten between Put's hashing pass and the
// upload: Read yields one content until the body is rewound after being
// read to the end, and the other from then on, as does ReadAt.
type changingBody struct {
	before, after *bytes.Reader
	readAll       bool
	rewound       bool
}

func (c *changingBody) Read(p []byte) (int, error) {
	if c.rewound {
		return c.after.Read(p)
	}
	n, err := c.before.Read(p)
	if err == io.EOF {
		c.readAll = true
	}
	return n, err
}

func (c *changingBody) Seek(off int64, whence int) (int64, error) {
	if c.readAll && whence == io.SeekStart {
		c.rewound = true
	}
	c.after.Seek(off, whence)
	return c.before.Seek(off, whence)
}

func (c *changingBody) ReadAt(p []byte, off int64) (int, error) { return c.after.ReadAt(p, off) }

func TestBodyChangedWhileSending(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		for _, md5 := range []bool{false, true} {
			s := srv.newStoreWith(t, func(c *Config) { c.ContentMD5 = md5 })
			for _, size := range []int{100, MinPartSize + 1} {
				before := randomBytes(size)
				after := bytes.Clone(before)
				after[size/2] ^= 1
				body := &changingBody{before: bytes.NewReader(before), after: bytes.NewReader(after)}
				_, err := s.Put(context.Background(), "obj", body, objstore.PutOptions{})
				if err != nil {
					t.Logf("md5 %v, size %d: put refused: %v", md5, size, err)
					continue
				}
				if md5 || srv.checksSignatures {
					t.Errorf("md5 %v, size %d: put of a body that changed after hashing succeeded", md5, size)
				}
				_, _, err = readAll(t, s, "obj", nil)
				wantErr(t, err, objstore.ErrCorrupt)
			}
		}
	})
}

func TestPlanParts(t *testing.T) {
	s := &Store{partSize: 8 * MiB, threshold: 64 * MiB}
	for _, tc := range []struct {
		size     int64
		partSize int64
		parts    int
	}{
		{0, 0, 1},
		{64*MiB - 1, 64*MiB - 1, 1},
		{64 * MiB, 8 * MiB, 8},
		{64*MiB + 1, 8 * MiB, 9},
		{80000 * MiB, 8 * MiB, 10000},
		{80000*MiB + 1, 9 * MiB, 8889},
	} {
		u := &upload{size: tc.size}
		s.planParts(u)
		if u.partSize != tc.partSize || u.parts != tc.parts {
			t.Errorf("size %d: %d parts of %d, want %d of %d", tc.size, u.parts, u.partSize, tc.parts, tc.partSize)
		}
	}
}

func TestHashBody(t *testing.T) {
	s := &Store{}
	body := randomBytes(10*1024 + 7)
	for _, tc := range []struct {
		partSize int64
		parts    int
		md5      bool
	}{
		{1024, 11, true},
		{1024, 11, false},
		{int64(len(body)), 1, true},
	} {
		r := bytes.NewReader(append([]byte("xx"), body...))
		r.Seek(2, io.SeekStart)
		u := &upload{start: 2, size: int64(len(body)), partSize: tc.partSize, parts: tc.parts}
		if err := s.hashBody(r, u, tc.md5); err != nil {
			t.Fatal(err)
		}
		if pos, _ := r.Seek(0, io.SeekCurrent); pos != 2 {
			t.Errorf("body left at %d, want 2", pos)
		}
		want, _, _ := objstore.HashBody(bytes.NewReader(body))
		if u.sha256 != want {
			t.Errorf("sha256 %s, want %s", u.sha256, want)
		}
		wantSHAs, wantMD5s := tc.parts, 0
		if tc.parts == 1 {
			wantSHAs = 0 // the whole body's hash serves
		}
		if tc.md5 {
			wantMD5s = tc.parts
		}
		if len(u.partSHA256) != wantSHAs || len(u.partMD5) != wantMD5s {
			t.Errorf("%+v: %d part sha256s and %d md5s", tc, len(u.partSHA256), len(u.partMD5))
		}
		if tc.parts > 1 {
			last, _, _ := objstore.HashBody(bytes.NewReader(body[10*1024:]))
			if u.partSHA256[10] != last {
				t.Errorf("last part sha256 %s, want %s", u.partSHA256[10], last)
			}
		}
	}
	u := &upload{size: 5, partSize: 5, parts: 1}
	if err := s.hashBody(bytes.NewReader(body), u, false); err == nil {
		t.Error("a body longer than announced went unnoticed")
	}
	u = &upload{parts: 1}
	if err := s.hashBody(bytes.NewReader(nil), u, true); err != nil || len(u.partMD5) != 1 {
		t.Errorf("empty body: %d md5s, %v", len(u.partMD5), err)
	}
}
