package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ferrydb/ferry/internal/objstore"
)

func TestEscapePath(t *testing.T) {
	for in, want := range map[string]string{
		"plain/key-1.txt_~":  "plain/key-1.txt_~",
		"a b+c=d&e?f#g":      "a%20b%2Bc%3Dd%26e%3Ff%23g",
		"100%/x:y;z,@!$'()*": "100%25/x%3Ay%3Bz%2C%40%21%24%27%28%29%2A",
		"ünï/日本":             "%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC",
		"//lead/trail/":      "//lead/trail/",
		"":                   "",
	} {
		if got := escapePath(in); got != want {
			t.Errorf("escapePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// The direct path is taken only where its request is certain.
func TestDirectPutWhere(t *testing.T) {
	creds := aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}, nil
	}))
	for _, c := range []struct {
		endpoint  string
		pathStyle bool
		direct    bool
	}{
		{"http://127.0.0.1:7070", true, true},
		{"https://s3.example.com/", true, true},
		{"http://127.0.0.1:7070", false, false},        // virtual-hosted buckets
		{"", true, false},                              // AWS itself
		{"http://127.0.0.1:7070/s3", true, false},      // a path under the host
		{"http://user:pw@127.0.0.1:7070", true, false}, // credentials in the URL
		{"ftp://127.0.0.1", true, false},
	} {
		got := newDirectPut(c.endpoint, c.pathStyle, http.DefaultClient, creds, "us-east-1", "b") != nil
		if got != c.direct {
			t.Errorf("endpoint %q path-style %v: direct %v, want %v", c.endpoint, c.pathStyle, got, c.direct)
		}
	}
}

// sdkOnly is a store built from cfg with the direct path turned off: every
// PUT through the SDK.
func sdkOnly(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.direct = nil
	return s
}

// recordingClient passes requests on and keeps a copy of each one's
// method, path and headers.
type recordingClient struct {
	next aws.HTTPClient
	mu   sync.Mutex
	reqs []*http.Request
}

func (c *recordingClient) Do(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, r.Clone(context.Background()))
	c.mu.Unlock()
	return c.next.Do(r)
}

func (c *recordingClient) take() []*http.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reqs
	c.reqs = nil
	return r
}

// Keys the SDK escapes in the request path, metadata and conditions: the
// direct path must store the same object under the same key as the SDK,
// with the signature accepted by a server that checks it.
func TestDirectPutStoresWhatTheSDKStores(t *testing.T) {
	keys := []string{
		"plain", "dir/sub/file.txt", "a b+c=d&e", "100%", "semi;colon:at@", "ünïcode/日本", "tilde~under_score",
		"q?hash#", "quote'paren()star*",
	}
	servers(t, func(t *testing.T, srv server) {
		rec := &recordingClient{next: http.DefaultClient}
		direct := srv.newStoreWith(t, func(c *Config) { c.HTTPClient = rec })
		if direct.direct == nil {
			t.Fatal("a path-style store at an endpoint has no direct path")
		}
		cfg := srv.config(direct.bucket)
		cfg.HTTPClient = rec
		viaSDK := sdkOnly(t, cfg)
		ctx := context.Background()
		for i, key := range keys {
			body := fmt.Appendf(nil, "body %d of %q", i, key)
			meta := map[string]string{"origin": "test", "n": fmt.Sprint(i)}
			rec.take()
			info, err := direct.Put(ctx, "d/"+key, bytes.NewReader(body), objstore.PutOptions{Metadata: meta})
			if err != nil {
				t.Fatalf("direct put %q: %v", key, err)
			}
			reqs := rec.take()
			if len(reqs) != 1 || reqs[0].Header.Get("Amz-Sdk-Invocation-Id") != "" {
				t.Fatalf("direct put %q: %d requests, the first from the SDK: %v", key, len(reqs), reqs)
			}
			if _, err := viaSDK.Put(ctx, "s/"+key, bytes.NewReader(body), objstore.PutOptions{Metadata: meta}); err != nil {
				t.Fatalf("SDK put %q: %v", key, err)
			}
			if reqs := rec.take(); len(reqs) != 1 || reqs[0].Header.Get("Amz-Sdk-Invocation-Id") == "" {
				t.Fatalf("SDK put %q: %d requests, not from the SDK", key, len(reqs))
			}
			got, gotInfo, err := readAll(t, direct, "d/"+key, nil)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("get %q after a direct put: %q, %v", key, got, err)
			}
			if gotInfo.ETag != info.ETag || info.ETag == "" {
				t.Errorf("key %q: put returned ETag %q, get %q", key, info.ETag, gotInfo.ETag)
			}
			if info.Modified.IsZero() {
				t.Errorf("key %q: put returned no time", key)
			}
			if gotInfo.Metadata["origin"] != "test" || gotInfo.Metadata["n"] != fmt.Sprint(i) {
				t.Errorf("key %q: metadata read back %v", key, gotInfo.Metadata)
			}
		}
		list := func(prefix string) []string {
			var out []string
			for info, err := range direct.List(ctx, prefix) {
				if err != nil {
					t.Fatalf("list %s: %v", prefix, err)
				}
				out = append(out, strings.TrimPrefix(info.Key, prefix))
			}
			slices.Sort(out)
			return out
		}
		listedDirect, listedSDK := list("d/"), list("s/")
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(listedDirect, want) || !slices.Equal(listedSDK, want) {
			t.Errorf("keys listed:\ndirect %q\nSDK    %q\nwant   %q", listedDirect, listedSDK, want)
		}
	})
}

// The headers that say what is stored and under which condition are the
// ones the SDK sends for the same Put.
func TestDirectPutSendsWhatTheSDKSends(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		w.Header().Set("ETag", `"e"`)
	}))
	defer srv.Close()
	cfg := server{endpoint: srv.URL, access: "AKID", secret: "secret"}.config("bucket")
	cfg.SessionToken = "token"
	cfg.ContentMD5 = true
	cfg.Prefix = "pre fix"
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	viaSDK := sdkOnly(t, cfg)
	body := []byte("the body")
	opts := objstore.PutOptions{Metadata: map[string]string{"Kind": "segment"}, IfNoneMatch: true}
	for _, st := range []*Store{s, viaSDK} {
		if _, err := st.Put(context.Background(), "k/ä b", bytes.NewReader(body), opts); err != nil {
			t.Fatal(err)
		}
	}
	opts = objstore.PutOptions{IfMatch: `"etag"`}
	for _, st := range []*Store{s, viaSDK} {
		if _, err := st.Put(context.Background(), "k2", bytes.NewReader(body), opts); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("server saw %d requests, want 4", len(seen))
	}
	for i := 0; i < 4; i += 2 {
		d, sdk := seen[i], seen[i+1]
		if d.Header.Get("Amz-Sdk-Invocation-Id") != "" || sdk.Header.Get("Amz-Sdk-Invocation-Id") == "" {
			t.Fatalf("requests %d and %d: want the direct one first, then the SDK's", i, i+1)
		}
		if d.Method != sdk.Method || d.URL.EscapedPath() != sdk.URL.EscapedPath() || d.ContentLength != sdk.ContentLength {
			t.Errorf("direct %s %s (%d bytes), SDK %s %s (%d bytes)", d.Method, d.URL.EscapedPath(), d.ContentLength,
				sdk.Method, sdk.URL.EscapedPath(), sdk.ContentLength)
		}
		for _, h := range []string{"X-Amz-Content-Sha256", "X-Amz-Meta-Kind", "X-Amz-Meta-" + objstore.MetaSHA256,
			"Content-Md5", "If-None-Match", "If-Match", "X-Amz-Security-Token"} {
			if d.Header.Get(h) != sdk.Header.Get(h) {
				t.Errorf("request %d: header %s: direct %q, SDK %q", i, h, d.Header.Get(h), sdk.Header.Get(h))
			}
		}
		for _, h := range []string{"X-Amz-Content-Sha256", "Content-Md5", "X-Amz-Security-Token", "Authorization", "X-Amz-Date"} {
			if d.Header.Get(h) == "" {
				t.Errorf("request %d: direct put sent no %s", i, h)
			}
		}
		signed := func(r *http.Request) []string {
			a := r.Header.Get("Authorization")
			_, rest, _ := strings.Cut(a, "SignedHeaders=")
			list, _, _ := strings.Cut(rest, ",")
			return strings.Split(list, ";")
		}
		for _, h := range []string{"host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token", "content-md5"} {
			if !slices.Contains(signed(d), h) {
				t.Errorf("request %d: direct put does not sign %s (signed: %v)", i, h, signed(d))
			}
		}
	}
	if got := seen[0].URL.EscapedPath(); got != "/bucket/pre%20fix/k/%C3%A4%20b" {
		t.Errorf("direct put path %q", got)
	}
}

// A refusal comes back from the direct path as the same error as from the
// SDK: the same status, the same meaning for callers, the same retry
// decision.
func TestDirectPutErrorsMatchTheSDK(t *testing.T) {
	type answer struct {
		status int
		body   string
	}
	xmlErr := func(code, msg string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>` + msg + `</Message><RequestId>r1</RequestId></Error>`
	}
	var mu sync.Mutex
	var cur answer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		a := cur
		mu.Unlock()
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	defer srv.Close()
	cfg := server{endpoint: srv.URL, access: "a", secret: "b"}.config("bucket")
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	viaSDK := sdkOnly(t, cfg)
	sentinels := []error{objstore.ErrPreconditionFailed, objstore.ErrNotFound, ErrNoSuchBucket, ErrAccessDenied}
	for _, a := range []answer{
		{500, xmlErr("InternalError", "We encountered an internal error.")},
		{503, xmlErr("SlowDown", "Reduce your request rate.")},
		{404, xmlErr("NoSuchBucket", "The specified bucket does not exist")},
		{403, xmlErr("AccessDenied", "Access Denied")},
		{403, xmlErr("SignatureDoesNotMatch", "The request signature we calculated does not match")},
		{412, ""},
		{412, xmlErr("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")},
		{409, xmlErr("ConditionalRequestConflict", "A conflicting operation occurred")},
		{404, ""},
		{400, "not xml at all <"},
		{400, xmlErr("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")},
		{429, ""},
	} {
		mu.Lock()
		cur = a
		mu.Unlock()
		put := func(st *Store) error {
			_, err := st.Put(context.Background(), "k", bytes.NewReader([]byte("x")), objstore.PutOptions{})
			if err == nil {
				t.Fatalf("answer %d %q: put succeeded", a.status, a.body)
			}
			return err
		}
		d, sdk := put(s), put(viaSDK)
		var de, se *objstore.Error
		if !errors.As(d, &de) || !errors.As(sdk, &se) {
			t.Fatalf("answer %d: not objstore errors: %v / %v", a.status, d, sdk)
		}
		if de.StatusCode != se.StatusCode || de.StatusCode != a.status {
			t.Errorf("answer %d: status direct %d, SDK %d", a.status, de.StatusCode, se.StatusCode)
		}
		if objstore.Transient(d) != objstore.Transient(sdk) {
			t.Errorf("answer %d %.40q: transient direct %v, SDK %v", a.status, a.body, objstore.Transient(d), objstore.Transient(sdk))
		}
		for _, target := range sentinels {
			if errors.Is(d, target) != errors.Is(sdk, target) {
				t.Errorf("answer %d %.40q: is %v: direct %v, SDK %v", a.status, a.body, target, errors.Is(d, target), errors.Is(sdk, target))
			}
		}
		_, dc := classify(d)
		_, sc := classify(sdk)
		if dc != sc {
			t.Errorf("answer %d %.40q: code direct %q, SDK %q", a.status, a.body, dc, sc)
		}
		if strings.Contains(d.Error(), "\n") {
			t.Errorf("answer %d: message spans lines: %q", a.status, d)
		}
	}
}
