package s3store

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrydb/ferry/internal/objstore"
)

// The benchmarks run each size twice against versitygw: as the bare SDK
// call and through Store, which adds hashing (SHA-256 and Content-MD5 in
// one pass, with the SHA-256 reused as the signed payload hash) on Put and
// verification on Get. Reading the two lines side by side gives the cost of
// what Store adds.

var benchSizes = []struct {
	name string
	size int
}{
	{"64KiB", 64 << 10},
	{"8MiB", 8 << 20},
}

// stacked wraps s the way ferry runs it: retries, metrics, rate limits
// (set high enough never to wait, so only their bookkeeping is measured)
// and timeouts. Its line against store's gives the wrappers' overhead.
func stacked(s *Store) objstore.Store {
	return objstore.Stack(s, objstore.StackOptions{
		Backend: "s3",
		Metrics: objstore.NewMetrics(objstore.NewRegistry()),
		Limits:  objstore.Limits{RequestsPerSecond: 1e6, BytesPerSecond: 1 << 40},
	})
}

// benchStore is a Store with the production defaults, so that 8 MiB goes
// up as one PutObject like the raw call.
func benchStore(b *testing.B) *Store {
	srv := versityGW(b)
	return srv.newStoreWith(b, func(c *Config) {
		c.PartSize, c.MultipartThreshold, c.Concurrency = 0, 0, 0
	})
}

func BenchmarkPut(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for _, sz := range benchSizes {
		data := randomBytes(sz.size)
		b.Run("raw-"+sz.name, func(b *testing.B) {
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
					Bucket:        aws.String(s.bucket),
					Key:           aws.String("raw-" + sz.name),
					Body:          bytes.NewReader(data),
					ContentLength: aws.Int64(int64(len(data))),
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, v := range []struct {
			name  string
			store objstore.Store
		}{{"store-", s}, {"stacked-", stacked(s)}} {
			b.Run(v.name+sz.name, func(b *testing.B) {
				b.SetBytes(int64(sz.size))
				for b.Loop() {
					if _, err := v.store.Put(ctx, v.name+sz.name, bytes.NewReader(data), objstore.PutOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for _, sz := range benchSizes {
		key := "obj-" + sz.name
		mustPut(b, s, key, randomBytes(sz.size), objstore.PutOptions{})
		b.Run("raw-"+sz.name, func(b *testing.B) {
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.fullKey(key))})
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.Copy(io.Discard, out.Body)
				out.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, v := range []struct {
			name  string
			store objstore.Store
		}{{"store-", s}, {"stacked-", stacked(s)}} {
			b.Run(v.name+sz.name, func(b *testing.B) {
				b.SetBytes(int64(sz.size))
				for b.Loop() {
					rc, _, err := v.store.Get(ctx, key, nil)
					if err != nil {
						b.Fatal(err)
					}
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
