package s3store

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Get implements objstore.Store.
func (s *Store) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if rng != nil && (rng.Offset != 0 || rng.Length >= 0) {
		return s.getRange(ctx, key, *rng)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.fullKey(key)),
	})
	if err != nil {
		return nil, objstore.Info{}, s.opError("get", key, err)
	}
	info := objectInfo(key, aws.ToInt64(out.ContentLength), out.ETag, out.LastModified, out.Metadata)
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	if rng != nil {
		// A range of the whole object is still a range: no checksum, but
		// the length is checked.
		return objstore.VerifyReader(out.Body, key, size, ""), info, nil
	}
	return objstore.VerifyReader(out.Body, key, size, info.SHA256), info, nil
}

// getRange reads part of an object. The answer is checked against what was
// asked: a server that ignores the Range header, or answers another one,
// would otherwise hand the caller the wrong bytes without any error.
func (s *Store) getRange(ctx context.Context, key string, rng objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if rng.Offset < 0 || rng.Length < -1 {
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: fmt.Errorf("invalid range offset %d length %d", rng.Offset, rng.Length)}
	}
	if rng.Length == 0 {
		// HTTP cannot ask for zero bytes; still report a missing key.
		info, err := s.Head(ctx, key)
		if err != nil {
			return nil, objstore.Info{}, err
		}
		return io.NopCloser(strings.NewReader("")), info, nil
	}
	header := fmt.Sprintf("bytes=%d-", rng.Offset)
	if rng.Length > 0 {
		header += strconv.FormatInt(rng.Offset+rng.Length-1, 10)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.fullKey(key)),
		Range:  aws.String(header),
	})
	if err != nil {
		return nil, objstore.Info{}, s.opError("get", key, err)
	}
	first, last, total, err := parseContentRange(aws.ToString(out.ContentRange))
	if err != nil {
		out.Body.Close()
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: fmt.Errorf("range %s: %w", header, err)}
	}
	want := total - rng.Offset
	if rng.Length > 0 {
		want = min(want, rng.Length)
	}
	if got := aws.ToInt64(out.ContentLength); first != rng.Offset || last-first+1 != want || got != want {
		out.Body.Close()
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: fmt.Errorf(
			"asked for %s of %d bytes, server answered bytes %d-%d with %d bytes", header, total, first, last, got)}
	}
	info := objectInfo(key, total, out.ETag, out.LastModified, out.Metadata)
	return objstore.VerifyReader(out.Body, key, want, ""), info, nil
}

// parseContentRange parses "bytes first-last/total".
func parseContentRange(s string) (first, last, total int64, err error) {
	spec, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		if s == "" {
			return 0, 0, 0, fmt.Errorf("server ignored the Range header")
		}
		return 0, 0, 0, fmt.Errorf("malformed Content-Range %q", s)
	}
	span, size, ok1 := strings.Cut(spec, "/")
	a, b, ok2 := strings.Cut(span, "-")
	if !ok1 || !ok2 {
		return 0, 0, 0, fmt.Errorf("malformed Content-Range %q", s)
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	total, err3 := strconv.ParseInt(size, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || total <= last {
		return 0, 0, 0, fmt.Errorf("malformed Content-Range %q", s)
	}
	return first, last, total, nil
}

// Head implements objstore.Store.
func (s *Store) Head(ctx context.Context, key string) (objstore.Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.fullKey(key)),
	})
	if err != nil {
		return objstore.Info{}, s.opError("head", key, err)
	}
	return objectInfo(key, aws.ToInt64(out.ContentLength), out.ETag, out.LastModified, out.Metadata), nil
}

func objectInfo(key string, size int64, etag *string, modified *time.Time, meta map[string]string) objstore.Info {
	return objstore.Info{
		Key:      key,
		Size:     size,
		ETag:     aws.ToString(etag),
		Modified: aws.ToTime(modified),
		SHA256:   meta[objstore.MetaSHA256],
		Metadata: userMetadata(meta),
	}
}
