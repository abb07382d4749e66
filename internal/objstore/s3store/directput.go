package s3store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrydb/ferry/internal/objstore"
)

// directPutMax is the largest body that goes up as a direct PUT.
const directPutMax = 1 * MiB

// directPut sends small single PUTs to a path-style endpoint as one signed
// HTTP request, without the SDK's operation stack. For a body of a few KiB
// that stack (some forty middlewares, endpoint rules, its own copies of the
// input and the answer) costs about as much CPU as the rest of a file's way
// through ferry, spooling included, and more than the request itself: it
// set the rate of pushing many small files. What goes over the wire is what
// the SDK would send for the same PutObject (the same signature, the body's
// SHA-256 as the signed payload hash, the same metadata and condition
// headers), and a refusal comes back as the same error types, so that
// classify and opError read both paths alike.
//
// It is used only where its request is certain: an endpoint given as
// scheme and host, addressed path-style, with credentials to sign with.
// Everything else (AWS itself, virtual-hosted buckets, larger bodies,
// multipart uploads) stays with the SDK.
type directPut struct {
	client      aws.HTTPClient
	credentials aws.CredentialsProvider
	signer      *v4.Signer
	region      string
	base        string // scheme://host, no trailing slash
	bucketPath  string // "/" + escaped bucket name
}

// newDirectPut returns the direct path for an endpoint, or nil when
// requests to it must go through the SDK.
func newDirectPut(endpoint string, pathStyle bool, client aws.HTTPClient, creds aws.CredentialsProvider, region, bucket string) *directPut {
	if endpoint == "" || !pathStyle || creds == nil {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil
	}
	return &directPut{
		client:      client,
		credentials: creds,
		signer:      v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }),
		region:      region,
		base:        u.Scheme + "://" + u.Host,
		bucketPath:  "/" + escapePath(bucket),
	}
}

// put uploads body (size bytes from its current offset) to key. It returns
// errors as the SDK would, for opError to translate.
func (d *directPut) put(ctx context.Context, key string, body io.ReadSeeker, u *upload) (objstore.Info, error) {
	data := make([]byte, u.size)
	if _, err := io.ReadFull(body, data); err != nil {
		return objstore.Info{}, fmt.Errorf("read body: %w", err)
	}
	creds, err := d.credentials.Retrieve(ctx)
	if err != nil {
		return objstore.Info{}, fmt.Errorf("get credentials: %w", err)
	}

	escaped := d.bucketPath + "/" + escapePath(key)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, d.base+escaped, bytes.NewReader(data))
	if err != nil {
		return objstore.Info{}, fmt.Errorf("build request: %w", err)
	}
	// A bytes.Reader body gives the request its length and a GetBody, so
	// that the transport can send it again on a fresh connection when a
	// kept-alive one turns out closed.
	h := req.Header
	h.Set("X-Amz-Content-Sha256", u.sha256)
	h.Set("User-Agent", "ferry")
	for k, v := range u.meta {
		h.Set("X-Amz-Meta-"+k, v)
	}
	if u.partMD5 != nil {
		h.Set("Content-MD5", base64.StdEncoding.EncodeToString(u.partMD5[0]))
	}
	if u.opts.IfNoneMatch {
		h.Set("If-None-Match", "*")
	}
	if u.opts.IfMatch != "" {
		h.Set("If-Match", u.opts.IfMatch)
	}
	if err := d.signer.SignHTTP(ctx, creds, req, u.sha256, "s3", d.region, time.Now()); err != nil {
		return objstore.Info{}, fmt.Errorf("sign request: %w", err)
	}

	resp, err := d.client.Do(req)
	if err != nil {
		return objstore.Info{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return objstore.Info{}, responseError(resp)
	}
	// Drained, so that the connection goes back to the pool.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	var modified time.Time
	if t, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		modified = t
	}
	return objstore.Info{ETag: resp.Header.Get("ETag"), Modified: modified}, nil
}

// responseError reads an S3 error answer into the error chain the SDK
// builds for it: a response error holding the status, around an API error
// holding the code and message. An answer without a body gets its code
// from the status text, and one whose body is not XML gets none, as the
// SDK gives them.
func responseError(resp *http.Response) error {
	wrap := func(err error) error {
		return &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: err},
			RequestID:     resp.Header.Get("X-Amz-Request-Id"),
		}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return wrap(fmt.Errorf("read error answer: %w", err))
	}
	var parsed struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if err := xml.Unmarshal(raw, &parsed); err != nil && !errors.Is(err, io.EOF) {
		return wrap(fmt.Errorf("read error answer: %w", err))
	}
	if parsed.Code == "" && parsed.Message == "" {
		text := http.StatusText(resp.StatusCode)
		parsed.Code, parsed.Message = strings.ReplaceAll(text, " ", ""), text
	}
	if parsed.Code == "" {
		parsed.Code = "UnknownError"
	}
	return wrap(&smithy.GenericAPIError{Code: parsed.Code, Message: parsed.Message})
}

// escapePath percent-encodes every byte of an object key but the
// characters S3 leaves as they are (letters, digits, "-._~") and "/", as
// the SDK does for a key in the request path; the signature covers the
// path exactly as escaped here.
func escapePath(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
