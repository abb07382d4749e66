// Package testenv finds the external servers that ferry's tests run
// against. scripts/test starts them and exports their addresses; a test that
// needs one and cannot find it fails under CI=true and skips, saying why,
// on a developer's quick local run.
package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Server is a real S3-compatible server (versitygw) reachable over
// loopback with root credentials.
type S3Server struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
}

// S3 returns the real S3 server started by scripts/test.
func S3(t testing.TB) S3Server {
	t.Helper()
	s := S3Server{
		Endpoint:  os.Getenv("FERRY_TEST_S3_ENDPOINT"),
		AccessKey: os.Getenv("FERRY_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("FERRY_TEST_S3_SECRET_KEY"),
		Region:    "us-east-1",
	}
	if s.Endpoint == "" || s.AccessKey == "" || s.SecretKey == "" {
		Missing(t, "real S3 server (FERRY_TEST_S3_ENDPOINT and credentials, set by scripts/test)")
	}
	return s
}

// Missing ends a test that cannot find what it needs: a failure under CI,
// where everything must be present, and a loud skip elsewhere.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI=%s but %s is not available", os.Getenv("CI"), what)
	}
	t.Skipf("SKIPPED, NOT PASSED: %s is not available; run scripts/test to start it", what)
}

// Bucket creates a bucket with a unique name on srv for one test and
// returns its name. The bucket is left behind: the server's data directory
// is temporary and goes away with the test run.
func Bucket(t testing.TB, srv S3Server) string {
	t.Helper()
	// A transport of its own, closed after the call, so that no
	// keep-alive connection outlives the test for goleak to find.
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(srv.Endpoint),
		Region:       srv.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		HTTPClient:   &http.Client{Transport: transport},
	})
	name := fmt.Sprintf("ferry-test-%d-%d", time.Now().UnixNano(), bucketSeq.Add(1))
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", name, srv.Endpoint, err)
	}
	return name
}

var bucketSeq atomic.Int64
