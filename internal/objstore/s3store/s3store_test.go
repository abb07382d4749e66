package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/ferrydb/ferry/internal/objstore"
)

func TestRoundTrip(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStoreWith(t, func(c *Config) { c.Prefix = "/app/db/" })
		body := randomBytes(100_000)
		meta := map[string]string{"Txid": "42"}
		put := mustPut(t, s, "seg/0001", body, objstore.PutOptions{Metadata: meta})
		sum := sha256.Sum256(body)
		if put.SHA256 != hex.EncodeToString(sum[:]) || put.Size != int64(len(body)) || put.ETag == "" || put.Modified.IsZero() {
			t.Errorf("put info %+v", put)
		}

		got, info, err := readAll(t, s, "seg/0001", nil)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("get: %d bytes, %v", len(got), err)
		}
		if info.SHA256 != put.SHA256 || info.ETag != put.ETag || info.Metadata["txid"] != "42" || len(info.Metadata) != 1 {
			t.Errorf("get info %+v, put info %+v", info, put)
		}

		head, err := s.Head(context.Background(), "seg/0001")
		if err != nil || head.Size != int64(len(body)) || head.SHA256 != put.SHA256 || head.Metadata["txid"] != "42" {
			t.Errorf("head %+v, %v", head, err)
		}

		// The prefix is in the bucket, and not in what List returns.
		raw, err := s.client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("app/db/seg/0001")})
		if err != nil || aws.ToInt64(raw.ContentLength) != int64(len(body)) {
			t.Errorf("raw head of prefixed key: %v", err)
		}
		var keys []string
		for info, err := range s.List(context.Background(), "") {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, info.Key)
		}
		if len(keys) != 1 || keys[0] != "seg/0001" {
			t.Errorf("list = %q", keys)
		}

		_, err = s.Head(context.Background(), "seg/0002")
		wantErr(t, err, objstore.ErrNotFound)
		_, _, err = s.Get(context.Background(), "seg/0002", nil)
		wantErr(t, err, objstore.ErrNotFound)
		var oe *objstore.Error
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusNotFound || oe.Key != "seg/0002" {
			t.Errorf("get of missing key: %#v", err)
		}
	})
}

func TestConditionalPut(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStore(t)
		ctx := context.Background()
		first := mustPut(t, s, "lease", []byte("a"), objstore.PutOptions{IfNoneMatch: true})
		_, err := s.Put(ctx, "lease", bytes.NewReader([]byte("b")), objstore.PutOptions{IfNoneMatch: true})
		wantErr(t, err, objstore.ErrPreconditionFailed)
		var oe *objstore.Error
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusPreconditionFailed || objstore.Transient(err) {
			t.Errorf("create-only put over an existing key: %#v", err)
		}

		second := mustPut(t, s, "lease", []byte("c"), objstore.PutOptions{IfMatch: first.ETag})
		_, err = s.Put(ctx, "lease", bytes.NewReader([]byte("d")), objstore.PutOptions{IfMatch: first.ETag})
		wantErr(t, err, objstore.ErrPreconditionFailed)
		mustPut(t, s, "lease", []byte("e"), objstore.PutOptions{IfMatch: second.ETag})
	})
}

func TestGetRange(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStore(t)
		body := randomBytes(1000)
		mustPut(t, s, "obj", body, objstore.PutOptions{})
		for _, tc := range []struct {
			rng  objstore.Range
			want []byte
		}{
			{objstore.Range{Offset: 0, Length: 10}, body[:10]},
			{objstore.Range{Offset: 990, Length: 10}, body[990:]},
			{objstore.Range{Offset: 500, Length: -1}, body[500:]},
			{objstore.Range{Offset: 0, Length: -1}, body},
			{objstore.Range{Offset: 995, Length: 100}, body[995:]},
			{objstore.Range{Offset: 7, Length: 0}, nil},
		} {
			got, info, err := readAll(t, s, "obj", &tc.rng)
			if err != nil || !bytes.Equal(got, tc.want) || info.Size != int64(len(body)) {
				t.Errorf("range %+v: %d bytes, want %d; size %d; %v", tc.rng, len(got), len(tc.want), info.Size, err)
			}
		}
		_, _, err := readAll(t, s, "missing", &objstore.Range{Offset: 1, Length: 2})
		wantErr(t, err, objstore.ErrNotFound)
	})
}

// A server that ignores Range would hand back the whole object as if it
// were the part asked for.
func TestGetRangeIgnoredByServer(t *testing.T) {
	fake := gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Range")
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s := server{name: "range-ignoring", endpoint: srv.URL, access: "a", secret: "b"}.newStore(t)
	mustPut(t, s, "obj", randomBytes(100), objstore.PutOptions{})
	_, _, err := readAll(t, s, "obj", &objstore.Range{Offset: 10, Length: 10})
	if err == nil || !strings.Contains(err.Error(), "ignored the Range") {
		t.Fatalf("ranged get from a server that ignores Range: %v", err)
	}
}

func TestGetCorrupt(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStore(t)
		ctx := context.Background()
		body := []byte("what the bucket really holds")
		wrong := sha256.Sum256([]byte("what ferry wrote"))
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:   aws.String(s.bucket),
			Key:      aws.String("chunks/ab/cd"),
			Body:     bytes.NewReader(body),
			Metadata: map[string]string{objstore.MetaSHA256: hex.EncodeToString(wrong[:])},
		})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = readAll(t, s, "chunks/ab/cd", nil)
		wantErr(t, err, objstore.ErrCorrupt)
		if !strings.Contains(err.Error(), "chunks/ab/cd") {
			t.Errorf("corruption error does not name the key: %v", err)
		}
		// A range carries no checksum to compare with.
		if got, _, err := readAll(t, s, "chunks/ab/cd", &objstore.Range{Offset: 0, Length: 4}); err != nil || string(got) != "what" {
			t.Errorf("ranged get of a corrupt object: %q, %v", got, err)
		}
	})
}

// A caller's SHA256 that does not match the body must not produce an object
// that reads back as intact: a server that checks the signed payload hash
// refuses the Put, any other stores it and Get then fails.
func TestPutWrongSHA256(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStore(t)
		wrong := sha256.Sum256([]byte("other"))
		_, err := s.Put(context.Background(), "obj", bytes.NewReader([]byte("body")), objstore.PutOptions{SHA256: hex.EncodeToString(wrong[:])})
		if srv.checksSignatures {
			if err == nil {
				t.Fatal("put with a wrong SHA256 succeeded on a server that checks payload hashes")
			}
			t.Logf("put refused: %v", err)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = readAll(t, s, "obj", nil)
		wantErr(t, err, objstore.ErrCorrupt)
	})
}

func TestDeleteMany(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		s := srv.newStoreWith(t, func(c *Config) { c.Prefix = "p" })
		ctx := context.Background()
		n := 1005
		if testing.Short() || srv.name != "gofakes3" {
			// Enough for two batches is too slow on a real server here;
			// the batching is the same code either way.
			n = 20
		}
		var keys []string
		for i := range n {
			k := fmt.Sprintf("k/%04d", i)
			keys = append(keys, k)
			mustPut(t, s, k, []byte{byte(i)}, objstore.PutOptions{})
		}
		if err := s.Delete(ctx, append(keys, "k/missing")...); err != nil {
			t.Fatal(err)
		}
		for info, err := range s.List(ctx, "") {
			t.Fatalf("left after delete: %+v %v", info, err)
		}
		if err := s.Delete(ctx, "k/missing"); err != nil {
			t.Errorf("delete of a missing key: %v", err)
		}
		if err := s.Delete(ctx); err != nil {
			t.Errorf("delete of nothing: %v", err)
		}
	})
}

func TestCheck(t *testing.T) {
	servers(t, func(t *testing.T, srv server) {
		ctx := context.Background()
		s := srv.newStore(t)
		if err := s.Check(ctx); err != nil {
			t.Fatalf("check of an existing bucket: %v", err)
		}

		missing, err := New(ctx, srv.config("no-such-bucket-here"))
		if err != nil {
			t.Fatal(err)
		}
		err = missing.Check(ctx)
		wantErr(t, err, ErrNoSuchBucket)
		want := fmt.Sprintf("s3 bucket %q at %s: bucket does not exist", "no-such-bucket-here", srv.endpoint)
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("check of a missing bucket says %q, want it to start with %q", err, want)
		}
		if objstore.Transient(err) {
			t.Errorf("a missing bucket is reported as transient: %v", err)
		}
		t.Logf("missing bucket: %v", err)

		if !srv.checksSignatures {
			return
		}
		for name, edit := range map[string]func(*Config){
			"wrong secret": func(c *Config) { c.SecretAccessKey = "not-the-secret-x" },
			"unknown key":  func(c *Config) { c.AccessKeyID = "nobody"; c.SecretAccessKey = "not-the-secret-y" },
		} {
			cfg := srv.config(s.bucket)
			edit(&cfg)
			bad, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = bad.Check(ctx)
			wantErr(t, err, ErrAccessDenied)
			want := fmt.Sprintf("s3 bucket %q at %s: access denied: check credentials", s.bucket, srv.endpoint)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s: check says %q, want it to start with %q", name, err, want)
			}
			t.Logf("%s: %v", name, err)
			_, putErr := bad.Put(ctx, "k", bytes.NewReader([]byte("x")), objstore.PutOptions{})
			wantErr(t, putErr, ErrAccessDenied)
			_, _, getErr := bad.Get(ctx, "k", nil)
			for _, e := range []error{err, putErr, getErr} {
				if e == nil || strings.Contains(e.Error(), cfg.SecretAccessKey) || strings.Contains(e.Error(), srv.secret) {
					t.Errorf("%s: error leaks a secret or is nil: %v", name, e)
				}
			}
		}
	})
}

func TestConfigHidesSecrets(t *testing.T) {
	cfg := Config{Bucket: "b", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI-secret", SessionToken: "token-secret"}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprint(s), fmt.Sprintf("%+v", s),
	} {
		if strings.Contains(text, cfg.SecretAccessKey) || strings.Contains(text, cfg.SessionToken) {
			t.Errorf("printed config leaks a secret: %s", text)
		}
	}
	if _, err := New(context.Background(), Config{Bucket: "b", AccessKeyID: "AKID"}); err == nil {
		t.Error("an access key id without its secret was accepted")
	}
	if _, err := New(context.Background(), Config{Bucket: "b", PartSize: MiB}); err == nil {
		t.Error("a 1 MiB part size was accepted")
	}
	_, err = New(context.Background(), Config{Bucket: "b", Endpoint: "127.0.0.1:7070"})
	if err == nil || !strings.Contains(err.Error(), "not an http") {
		t.Errorf("an endpoint without a scheme: %v", err)
	}
	withPassword := Config{Bucket: "b", Endpoint: "http://user:hunter2@127.0.0.1:7070"}
	s, err = New(context.Background(), withPassword)
	if err != nil {
		t.Fatal(err)
	}
	if text := withPassword.String() + s.String(); strings.Contains(text, "hunter2") {
		t.Errorf("printed endpoint leaks its password: %s", text)
	}
}

// With AWS_CA_BUNDLE set, as on many corporate hosts, the SDK must still
// build its client, and must trust the bundle's certificates.
func TestAWSCABundle(t *testing.T) {
	fake := gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	srv := httptest.NewTLSServer(fake)
	t.Cleanup(srv.Close)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(bundle, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)

	s := server{name: "gofakes3-tls", endpoint: srv.URL, access: "a", secret: "b"}.newStore(t)
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Over HTTPS the SDK would send the body unsigned; Put signs it with
	// the hash it computed, which must not break anything.
	body := randomBytes(6 * MiB)
	mustPut(t, s, "big", body, objstore.PutOptions{})
	mustPut(t, s, "small", body[:100], objstore.PutOptions{})
	for key, want := range map[string][]byte{"big": body, "small": body[:100]} {
		if got, _, err := readAll(t, s, key, nil); err != nil || !bytes.Equal(got, want) {
			t.Errorf("get %s over TLS: %d bytes, %v", key, len(got), err)
		}
	}
}

// The SDK must try once and leave retries to ferry's own wrapper.
func TestSingleAttempt(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>`)
	}))
	defer srv.Close()
	t.Setenv("AWS_MAX_ATTEMPTS", "5")
	t.Setenv("AWS_RETRY_MODE", "adaptive")
	s, err := New(context.Background(), server{endpoint: srv.URL, access: "a", secret: "b"}.config("bucket"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(context.Background(), "k", bytes.NewReader([]byte("x")), objstore.PutOptions{})
	var oe *objstore.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusServiceUnavailable || !objstore.Transient(err) {
		t.Fatalf("put against a 503 server: %#v", err)
	}
	_, _, err = s.Get(context.Background(), "k", nil)
	if !objstore.Transient(err) {
		t.Errorf("get against a 503 server is not transient: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("server saw %d requests for two calls", n)
	}
}

func TestNetworkErrorIsTransient(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	endpoint := srv.URL
	srv.Close()
	s, err := New(context.Background(), server{endpoint: endpoint, access: "a", secret: "b"}.config("bucket"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Head(context.Background(), "k")
	var oe *objstore.Error
	if !errors.As(err, &oe) || oe.StatusCode != 0 || !objstore.Transient(err) {
		t.Fatalf("head against a closed port: %#v", err)
	}
	err = s.Check(context.Background())
	if !objstore.Transient(err) || !strings.Contains(err.Error(), endpoint) {
		t.Errorf("check against a closed port: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Put(ctx, "k", bytes.NewReader([]byte("x")), objstore.PutOptions{})
	if !errors.Is(err, context.Canceled) || objstore.Transient(err) {
		t.Errorf("put with a cancelled context: %v", err)
	}
}
