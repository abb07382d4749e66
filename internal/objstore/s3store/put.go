package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrydb/ferry/internal/objstore"
)

// upload is what Put knows about a body before sending it.
type upload struct {
	key       string // the caller's key
	start     int64  // the body's offset when Put was called
	size      int64
	multipart bool
	partSize  int64 // == size for a single PutObject
	parts     int
	sha256    string
	// partSHA256 and partMD5 hold each part's checksums when Put read the
	// body itself and the body goes up in parts; partMD5 only when
	// Config.ContentMD5 asks for it.
	partSHA256 []string
	partMD5    [][]byte
	meta       map[string]string
	opts       objstore.PutOptions
}

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: fmt.Errorf("locate body: %w", err)}
	}
	size, err := objstore.BodySize(body)
	if err != nil {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: err}
	}
	u := &upload{key: key, start: start, size: size, opts: opts}
	s.planParts(u)

	u.sha256 = strings.ToLower(opts.SHA256)
	if u.sha256 == "" {
		if err := s.hashBody(body, u, s.contentMD5); err != nil {
			return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: err}
		}
	} else if b, err := hex.DecodeString(u.sha256); err != nil || len(b) != sha256.Size {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: fmt.Errorf("malformed SHA256 option %q", opts.SHA256)}
	}

	u.meta = make(map[string]string, len(opts.Metadata)+1)
	for k, v := range opts.Metadata {
		u.meta[strings.ToLower(k)] = v
	}
	u.meta[objstore.MetaSHA256] = u.sha256

	var info objstore.Info
	if u.multipart {
		info, err = s.putMultipart(ctx, body, u)
	} else {
		info, err = s.putSingle(ctx, body, u)
	}
	if err != nil {
		return objstore.Info{}, err
	}
	info.Key = key
	info.Size = size
	info.SHA256 = u.sha256
	info.Metadata = userMetadata(u.meta)
	return info, nil
}

// planParts picks the part size and count for u. Bodies under the threshold
// go up whole, as one "part".
func (s *Store) planParts(u *upload) {
	if u.size < s.threshold || u.size == 0 {
		u.partSize, u.parts = u.size, 1
		return
	}
	u.multipart = true
	u.partSize = s.partSize
	if u.size > u.partSize*maxParts {
		// S3 refuses part 10,001: grow the parts, in whole MiB.
		u.partSize = ((u.size+maxParts-1)/maxParts + MiB - 1) / MiB * MiB
	}
	u.parts = int((u.size + u.partSize - 1) / u.partSize)
}

func (s *Store) putSingle(ctx context.Context, body io.ReadSeeker, u *upload) (objstore.Info, error) {
	if s.direct != nil && u.size <= directPutMax {
		info, err := s.direct.put(ctx, s.fullKey(u.key), body, u)
		if err != nil {
			return objstore.Info{}, s.opError("put", u.key, err)
		}
		return info, nil
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.fullKey(u.key)),
		Body:          body,
		ContentLength: aws.Int64(u.size),
		Metadata:      u.meta,
	}
	if u.partMD5 != nil {
		in.ContentMD5 = aws.String(base64.StdEncoding.EncodeToString(u.partMD5[0]))
	}
	setConditions(&in.IfNoneMatch, &in.IfMatch, u.opts)
	out, err := s.client.PutObject(ctx, in, withPayloadHash(u.sha256))
	if err != nil {
		return objstore.Info{}, s.opError("put", u.key, err)
	}
	return objstore.Info{ETag: aws.ToString(out.ETag), Modified: responseTime(out.ResultMetadata)}, nil
}

func setConditions(ifNoneMatch, ifMatch **string, opts objstore.PutOptions) {
	if opts.IfNoneMatch {
		*ifNoneMatch = aws.String("*")
	}
	if opts.IfMatch != "" {
		*ifMatch = aws.String(opts.IfMatch)
	}
}

// withPayloadHash hands the SDK the body's SHA-256 that Put already knows.
// Over plain HTTP this spares the signer a second pass over the body; over
// HTTPS, where the SDK would send the body unsigned, it makes the payload
// signed, so that a server checking signatures rejects bytes that differ from
// what was hashed (a file rewritten while it was being sent, say).
func withPayloadHash(sum string) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("FerryPayloadHash",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
					middleware.FinalizeOutput, middleware.Metadata, error,
				) {
					return next.HandleFinalize(v4.SetPayloadHash(ctx, sum), in)
				}), middleware.Before)
		})
	}
}

// responseTime is the server's Date header, the closest a PutObject answer
// comes to the object's LastModified; zero when absent.
func responseTime(md middleware.Metadata) time.Time {
	resp, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	if !ok || resp == nil {
		return time.Time{}
	}
	t, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return t
}

// userMetadata is meta without the keys the store keeps for itself, or nil.
func userMetadata(meta map[string]string) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	m := maps.Clone(meta)
	delete(m, objstore.MetaSHA256)
	if len(m) == 0 {
		return nil
	}
	return m
}
