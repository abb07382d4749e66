package target_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

func roundTrip(t *testing.T, s objstore.Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Put(ctx, "dir/k", bytes.NewReader([]byte("payload")), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Get(ctx, "dir/k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != "payload" {
		t.Fatalf("read back %q, %v", got, err)
	}
}

func TestOpenFileURL(t *testing.T) {
	s, err := target.OpenURL(context.Background(), "file://"+t.TempDir(), target.Options{Check: true, Metrics: objstore.NewMetrics(objstore.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s)
}

func TestOpenS3URLOnRealServer(t *testing.T) {
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bucket := testenv.Bucket(t, srv)
	url := "s3://" + bucket + "/app/db?endpoint=" + srv.Endpoint + "&region=us-east-1&force-path-style=true"
	s, err := target.OpenURL(context.Background(), url, target.Options{Check: true})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s)
}

func TestOpenFailsFastOnMissingBucket(t *testing.T) {
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	url := "s3://ferry-no-such-bucket/x?endpoint=" + srv.Endpoint + "&force-path-style=true"
	_, err := target.OpenURL(context.Background(), url, target.Options{Check: true})
	if err == nil || !strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), srv.SecretKey) {
		t.Fatalf("missing bucket: err = %v, want a one-line 'does not exist' without the secret", err)
	}
}

func TestOpenRejectsMalformedURL(t *testing.T) {
	for _, url := range []string{"s3://", "ftp://x/y", "file://relative/path"} {
		if _, err := target.OpenURL(context.Background(), url, target.Options{}); err == nil {
			t.Errorf("OpenURL(%q) succeeded, want an error", url)
		}
	}
}
