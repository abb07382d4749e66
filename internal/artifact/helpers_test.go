package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/testenv"
)

// backend builds a fresh store for one test.
type backend struct {
	name string
	open func(t *testing.T) objstore.Store
}

// backends are the stores every round-trip and lease test runs against.
// The versitygw one needs the server that scripts/test starts.
var backends = []backend{
	{"mem", func(*testing.T) objstore.Store { return memstore.New() }},
	{"file", func(t *testing.T) objstore.Store {
		s, err := filestore.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"versitygw", openS3},
}

// openS3 builds an s3store on a bucket of its own on the real S3 server,
// removed again at cleanup. Bodies from 5 MiB go up in 5 MiB parts, so the
// round trip's tar takes the multipart path.
func openS3(t *testing.T) objstore.Store {
	t.Helper()
	srv := testenv.S3(t)
	ctx := context.Background()
	bucket := "ferry-artifact-" + randHex(6)
	client := s3.New(s3.Options{
		Region:                     srv.Region,
		BaseEndpoint:               aws.String(srv.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", bucket, srv.Endpoint, err)
	}
	st, err := s3store.New(ctx, s3store.Config{
		Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		PartSize: s3store.MinPartSize, MultipartThreshold: s3store.MinPartSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var keys []string
		for info, err := range st.List(ctx, "") {
			if err != nil {
				t.Logf("cleanup of bucket %s: %v", bucket, err)
				break
			}
			keys = append(keys, info.Key)
		}
		if len(keys) > 0 {
			if err := st.Delete(ctx, keys...); err != nil {
				t.Logf("cleanup of bucket %s: %v", bucket, err)
			}
		}
		if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Logf("cleanup of bucket %s: %v", bucket, err)
		}
	})
	return st
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func sum256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// tarEntry is one entry of a tar that a test writes by hand.
type tarEntry struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

// buildTarBytes writes entries as a tar, exactly as given: no path
// cleaning, no checks.
func buildTarBytes(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: mode, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manifestFor describes a tar the way an honest uploader would: every
// file, directory and symlink in it, as the tar gives them, without
// cleaning or checking anything. Tests then edit it to disagree.
func manifestFor(data []byte) Manifest {
	m := Manifest{Version: FormatVersion, Created: time.Unix(1700000000, 0).UTC(), TarSize: int64(len(data)), TarSHA256: sum256(data), Entries: []Entry{}}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			return m
		}
		switch h.Typeflag {
		case tar.TypeReg:
			// Capped: a sparse entry can claim far more bytes than the
			// tar holds, and no manifest may list more than that.
			sum := sha256.New()
			n, _ := io.Copy(sum, io.LimitReader(tr, int64(len(data))+1))
			mode := ModeFile
			if h.Mode&0o100 != 0 {
				mode = ModeExec
			}
			m.Entries = append(m.Entries, Entry{Path: h.Name, Type: TypeFile, Mode: mode, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))})
		case tar.TypeDir:
			m.Entries = append(m.Entries, Entry{Path: strings.TrimSuffix(h.Name, "/"), Type: TypeDir, Mode: ModeExec})
		case tar.TypeSymlink:
			m.Entries = append(m.Entries, Entry{Path: h.Name, Type: TypeSymlink, Link: h.Linkname})
		}
	}
}

// putArtifact stores a hand-made tar and manifest under key.
func putArtifact(t testing.TB, st objstore.Store, key string, data []byte, m Manifest) {
	t.Helper()
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, st, key, data, mb)
}

func putRaw(t testing.TB, st objstore.Store, key string, data, manifest []byte) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Put(ctx, TarKey(key), bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, ManifestKey(key), bytes.NewReader(manifest), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// listDir returns the names in dir, failing the test on error.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// findNamed returns every path under root whose base name is name.
func findNamed(t testing.TB, root, name string) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == name {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// failingStore fails Puts of one key, optionally after waiting on a hook.
type failingStore struct {
	objstore.Store
	key  string
	hook func(ctx context.Context) error
}

func (s *failingStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if key == s.key {
		if err := s.hook(ctx); err != nil {
			return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: err}
		}
	}
	return s.Store.Put(ctx, key, body, opts)
}

// countingStore counts the bytes read from each object.
type countingStore struct {
	objstore.Store
	read map[string]*int64
}

func (s *countingStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	rc, info, err := s.Store.Get(ctx, key, rng)
	if err != nil {
		return nil, info, err
	}
	n := new(int64)
	s.read[key] = n
	return &countingReader{rc, n}, info, nil
}

type countingReader struct {
	io.ReadCloser
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	*c.n += int64(n)
	return n, err
}

func mustErr(t testing.TB, err error, target error, substr ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one matching %v", target)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q does not match %v", err, target)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
