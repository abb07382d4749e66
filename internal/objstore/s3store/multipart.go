package s3store

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrydb/ferry/internal/objstore"
)

// abortTimeout bounds the cleanup of a failed upload. The cleanup runs on a
// context of its own because the usual reason for it is that the caller's
// context was cancelled.
const abortTimeout = 30 * time.Second

// part is one part on its way to a worker.
type part struct {
	num     int // from 1
	body    io.ReadSeeker
	size    int64
	release func()
}

// putMultipart uploads u in parts. Whatever goes wrong, including a
// cancelled ctx, it aborts the upload before returning: an incomplete
// upload is invisible to List yet billed for its parts until someone
// aborts it, and nobody else knows it exists.
func (s *Store) putMultipart(ctx context.Context, body io.ReadSeeker, u *upload) (objstore.Info, error) {
	key := s.fullKey(u.key)
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:   aws.String(s.bucket),
		Key:      aws.String(key),
		Metadata: u.meta,
	})
	if err != nil {
		return objstore.Info{}, s.opError("put", u.key, fmt.Errorf("create multipart upload: %w", err))
	}
	id := aws.ToString(created.UploadId)

	info, err := s.sendAndComplete(ctx, body, u, id)
	if err == nil {
		return info, nil
	}
	if abortErr := s.abort(ctx, key, id); abortErr != nil && !isCode(abortErr, "NoSuchUpload") {
		// NoSuchUpload means there is nothing left to clean up, as when
		// CompleteMultipartUpload succeeded but its answer was lost.
		var oe *objstore.Error
		if errors.As(err, &oe) {
			oe.Err = fmt.Errorf("%w; abort multipart upload %s also failed: %v", oe.Err, id, abortErr)
		}
	}
	return objstore.Info{}, err
}

func (s *Store) sendAndComplete(ctx context.Context, body io.ReadSeeker, u *upload, id string) (objstore.Info, error) {
	parts, err := s.sendParts(ctx, body, u, id)
	if err != nil {
		var oe *objstore.Error
		if !errors.As(err, &oe) {
			err = &objstore.Error{Op: "put", Key: u.key, Err: err}
		}
		return objstore.Info{}, err
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(s.fullKey(u.key)),
		UploadId:        aws.String(id),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	setConditions(&in.IfNoneMatch, &in.IfMatch, u.opts)
	out, err := s.client.CompleteMultipartUpload(ctx, in)
	if err != nil {
		return objstore.Info{}, s.opError("put", u.key, fmt.Errorf("complete multipart upload: %w", err))
	}
	return objstore.Info{ETag: aws.ToString(out.ETag), Modified: responseTime(out.ResultMetadata)}, nil
}

// sendParts uploads every part of u with up to s.concurrency requests in
// flight and returns them in order for CompleteMultipartUpload. The first
// failure cancels the rest.
func (s *Store) sendParts(ctx context.Context, body io.ReadSeeker, u *upload, id string) ([]types.CompletedPart, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	done := make([]types.CompletedPart, u.parts)
	parts := make(chan part)
	var wg sync.WaitGroup
	for range min(s.concurrency, u.parts) {
		wg.Go(func() {
			for p := range parts {
				etag, err := s.uploadPart(ctx, u, id, p)
				p.release()
				if err != nil {
					cancel(err)
					continue
				}
				done[p.num-1] = types.CompletedPart{ETag: aws.String(etag), PartNumber: aws.Int32(int32(p.num))}
			}
		})
	}
	err := s.feedParts(ctx, body, u, parts)
	close(parts)
	wg.Wait()
	if err != nil {
		cancel(err)
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return done, nil
}

// feedParts hands the parts of u to the workers until all are sent or ctx
// ends. A body that can be read at an offset (a file, a bytes.Reader) is
// read by each worker directly from its section, with no copy; any other
// body is read here in order into buffers shared by the whole Store, so
// that however many uploads run, at most Concurrency x PartSize bytes of
// body sit in memory.
func (s *Store) feedParts(ctx context.Context, body io.ReadSeeker, u *upload, parts chan<- part) error {
	ra, direct := body.(io.ReaderAt)
	if !direct {
		if _, err := body.Seek(u.start, io.SeekStart); err != nil {
			return fmt.Errorf("rewind body: %w", err)
		}
	}
	for i := range u.parts {
		off := int64(i) * u.partSize
		p := part{num: i + 1, size: min(u.partSize, u.size-off), release: func() {}}
		if direct {
			p.body = io.NewSectionReader(ra, u.start+off, p.size)
		} else {
			select {
			case s.bufs <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			buf := s.getBuf(p.size)
			p.release = func() {
				s.putBuf(buf)
				<-s.bufs
			}
			if _, err := io.ReadFull(body, buf); err != nil {
				p.release()
				return fmt.Errorf("read part %d: %w", p.num, err)
			}
			p.body = bytes.NewReader(buf)
		}
		select {
		case parts <- p:
		case <-ctx.Done():
			p.release()
			return nil
		}
	}
	return nil
}

func (s *Store) uploadPart(ctx context.Context, u *upload, id string, p part) (string, error) {
	in := &s3.UploadPartInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.fullKey(u.key)),
		UploadId:      aws.String(id),
		PartNumber:    aws.Int32(int32(p.num)),
		Body:          p.body,
		ContentLength: aws.Int64(p.size),
	}
	var optFns []func(*s3.Options)
	switch {
	case u.partSHA256 != nil:
		optFns = append(optFns, withPayloadHash(u.partSHA256[p.num-1]))
	case u.parts == 1:
		optFns = append(optFns, withPayloadHash(u.sha256))
	}
	if u.partMD5 != nil {
		in.ContentMD5 = aws.String(base64.StdEncoding.EncodeToString(u.partMD5[p.num-1]))
	}
	out, err := s.client.UploadPart(ctx, in, optFns...)
	if err != nil {
		return "", s.opError("put", u.key, fmt.Errorf("upload part %d of %d: %w", p.num, u.parts, err))
	}
	if aws.ToString(out.ETag) == "" {
		return "", &objstore.Error{Op: "put", Key: u.key, Err: fmt.Errorf("upload part %d of %d: server returned no etag", p.num, u.parts)}
	}
	return aws.ToString(out.ETag), nil
}

func (s *Store) abort(ctx context.Context, key, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(s.bucket),
		Key:      aws.String(key),
		UploadId: aws.String(id),
	})
	return err
}

func (s *Store) getBuf(n int64) []byte {
	if p, ok := s.pool.Get().(*[]byte); ok && int64(cap(*p)) >= n {
		return (*p)[:n]
	}
	return make([]byte, n)
}

func (s *Store) putBuf(b []byte) { s.pool.Put(&b) }
