package s3store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrydb/ferry/internal/objstore"
)

// deleteBatch is the most keys one DeleteObjects request may name.
const deleteBatch = 1000

// List implements objstore.Store. It asks for the next page only when the
// caller has consumed the previous one.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) {
		pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.bucket),
			Prefix: aws.String(s.fullKey(prefix)),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(objstore.Info{}, s.opError("list", prefix, err))
				return
			}
			for _, obj := range page.Contents {
				key, ok := strings.CutPrefix(aws.ToString(obj.Key), s.prefix)
				if !ok || !strings.HasPrefix(key, prefix) {
					// Trusting such a key would let a confused or hostile
					// server make ferry act on objects outside its prefix.
					yield(objstore.Info{}, &objstore.Error{Op: "list", Key: prefix,
						Err: fmt.Errorf("server listed key %q outside prefix %q", aws.ToString(obj.Key), s.fullKey(prefix))})
					return
				}
				info := objstore.Info{
					Key:      key,
					Size:     aws.ToInt64(obj.Size),
					ETag:     aws.ToString(obj.ETag),
					Modified: aws.ToTime(obj.LastModified),
				}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// Delete implements objstore.Store. One key costs one DeleteObject; more go
// in DeleteObjects batches of 1000, and every key the server could not
// delete is reported in the joined error.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	switch len(keys) {
	case 0:
		return nil
	case 1:
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket: aws.String(s.bucket),
			Key:    aws.String(s.fullKey(keys[0])),
		})
		if err != nil {
			if err := s.opError("delete", keys[0], err); !errors.Is(err, objstore.ErrNotFound) {
				return err
			}
		}
		return nil
	}
	var errs []error
	for batch := range slices.Chunk(keys, deleteBatch) {
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(s.fullKey(k))}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return s.opError("delete", batch[0], fmt.Errorf("delete %d keys: %w", len(batch), err))
		}
		for _, e := range out.Errors {
			key := strings.TrimPrefix(aws.ToString(e.Key), s.prefix)
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			errs = append(errs, &objstore.Error{Op: "delete", Key: key,
				Err: fmt.Errorf("%s: %s", aws.ToString(e.Code), aws.ToString(e.Message))})
		}
	}
	return errors.Join(errs...)
}
