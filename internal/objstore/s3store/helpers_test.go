package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/testenv"
)

// server is an S3 endpoint and credentials that tests can build stores on.
type server struct {
	name              string
	endpoint          string
	access, secret    string
	checksSignatures  bool
	rejectsKeyAndDirs bool
}

// fakeS3 starts an in-process gofakes3 server for t.
func fakeS3(t testing.TB) server {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	return server{name: "gofakes3", endpoint: srv.URL, access: "fake-access", secret: "fake-secret-value"}
}

// versityGW is the real S3 server started by the test script.
func versityGW(t testing.TB) server {
	t.Helper()
	s := testenv.S3(t)
	return server{name: "versitygw", endpoint: s.Endpoint, access: s.AccessKey, secret: s.SecretKey,
		checksSignatures: true, rejectsKeyAndDirs: true}
}

// testConfig makes 5 MiB bodies go up in 5 MiB parts, so that tests reach
// the multipart path with little data.
func (srv server) config(bucket string) Config {
	return Config{
		Bucket:             bucket,
		Endpoint:           srv.endpoint,
		Region:             "us-east-1",
		ForcePathStyle:     true,
		AccessKeyID:        srv.access,
		SecretAccessKey:    srv.secret,
		PartSize:           MinPartSize,
		MultipartThreshold: MinPartSize,
		Concurrency:        3,
	}
}

// newStore builds a store on a fresh bucket of srv, which it creates and,
// at cleanup, empties and removes.
func (srv server) newStore(t testing.TB) *Store {
	t.Helper()
	return srv.newStoreWith(t, func(*Config) {})
}

func (srv server) newStoreWith(t testing.TB, edit func(*Config)) *Store {
	t.Helper()
	cfg := srv.config(uniqueBucket())
	edit(&cfg)
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", cfg.Bucket, srv.name, err)
	}
	t.Cleanup(func() { removeBucket(t, s) })
	return s
}

func uniqueBucket() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "ferry-s3store-" + hex.EncodeToString(b)
}

// removeBucket deletes everything in s's bucket, incomplete uploads
// included, and then the bucket, so that a long test run leaves nothing.
func removeBucket(t testing.TB, s *Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ups, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		for _, u := range ups.Uploads {
			s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket), Key: u.Key, UploadId: u.UploadId})
		}
	}
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Logf("cleanup of bucket %s: %v", s.bucket, err)
			return
		}
		ids := make([]types.ObjectIdentifier, 0, len(page.Contents))
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		if len(ids) > 0 {
			if _, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(s.bucket), Delete: &types.Delete{Objects: ids}}); err != nil {
				t.Logf("cleanup of bucket %s: %v", s.bucket, err)
			}
		}
	}
	if _, err := s.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		t.Logf("cleanup of bucket %s: %v", s.bucket, err)
	}
}

// servers runs f once against each S3 server: gofakes3 always, versitygw
// when the test script started it.
func servers(t *testing.T, f func(t *testing.T, srv server)) {
	t.Run("gofakes3", func(t *testing.T) { f(t, fakeS3(t)) })
	t.Run("versitygw", func(t *testing.T) { f(t, versityGW(t)) })
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func readAll(t testing.TB, s *Store, key string, rng *objstore.Range) ([]byte, objstore.Info, error) {
	t.Helper()
	rc, info, err := s.Get(context.Background(), key, rng)
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, info, err
}

func mustPut(t testing.TB, s *Store, key string, body []byte, opts objstore.PutOptions) objstore.Info {
	t.Helper()
	info, err := s.Put(context.Background(), key, bytes.NewReader(body), opts)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return info
}

// incompleteUploads lists the multipart uploads s's bucket still holds.
func incompleteUploads(t testing.TB, s *Store) []types.MultipartUpload {
	t.Helper()
	out, err := s.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	return out.Uploads
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one matching %v", err, target)
	}
}
