// Package s3store is the objstore.Store backend for S3 and S3-compatible
// servers (AWS, R2, B2, GCS's S3 API, MinIO, Garage, Ceph RGW, versitygw).
//
// It owns the mapping from ferry's flat key space to one bucket and prefix,
// the translation of S3's answers into objstore's typed errors, and large
// uploads as multipart uploads that never hold more than PartSize x
// Concurrency bytes of a body in memory. It promises what the conformance
// suite checks, plus two things the suite cannot see: every byte it writes
// carries a SHA-256, in object metadata for Get to check and as the signed
// payload hash of every request that carries it, so that a server checking
// signatures refuses bytes that differ from those hashed; and no credential
// ever appears in an error or a printed Config.
//
// The SDK is told to try each request exactly once: retries, backoff and
// timeouts belong to objstore's wrappers, which know which failures are worth
// retrying and for how long. Stacking the SDK's own retry loop (and its
// client-side retry quota, which in a long-running daemon drains during an
// outage and then refuses to retry at all) under them would multiply
// attempts and hide errors.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
)

const (
	// MiB is 1<<20 bytes.
	MiB = 1 << 20

	// DefaultPartSize is the multipart part size when Config.PartSize is 0.
	DefaultPartSize = 8 * MiB
	// MinPartSize is the smallest part S3 accepts for any part but the last.
	MinPartSize = 5 * MiB
	// DefaultConcurrency is the number of parts uploaded at once.
	DefaultConcurrency = 4
	// DefaultMultipartThreshold is the body size from which Put uploads in
	// parts.
	DefaultMultipartThreshold = 64 * MiB

	// maxPartSize and maxSinglePut are S3's limits for one part and for one
	// PutObject; maxParts is the most parts one upload may have.
	maxPartSize  = 5 << 30
	maxSinglePut = 5 << 30
	maxParts     = 10000
)

// Config says which bucket to use and how to reach it.
type Config struct {
	Bucket string
	// Prefix is prepended to every key, separated by '/'. Leading and
	// trailing slashes are ignored.
	Prefix string
	// Endpoint is the server's base URL, such as http://127.0.0.1:7070.
	// Empty means AWS (or AWS_ENDPOINT_URL_S3 from the environment).
	Endpoint string
	// Region defaults to the AWS chain's region, then us-east-1.
	Region string
	// ForcePathStyle addresses the bucket as a path (host/bucket/key)
	// rather than a subdomain, as most self-hosted servers need.
	ForcePathStyle bool

	// AccessKeyID and SecretAccessKey, when set, are used instead of the
	// standard AWS credential chain; SessionToken goes with them.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string

	// PartSize is the size of each multipart part: default 8 MiB, at least
	// 5 MiB. It grows by itself for bodies that would need more than
	// 10,000 parts.
	PartSize int64
	// Concurrency is how many parts one upload sends at once, and how many
	// part buffers the whole Store may hold for bodies that cannot be read
	// at an offset: default 4.
	Concurrency int
	// MultipartThreshold is the body size from which Put uploads in parts:
	// default 64 MiB, at most 5 GiB.
	MultipartThreshold int64

	// ContentMD5 also sends each body's or part's MD5, for servers that do
	// not check the signed payload hash. It costs a second checksum over
	// every byte (about 800 MB/s per core, versus 1.7 GB/s for SHA-256),
	// which on a fast link is a large share of the upload's time, and adds
	// nothing on a server that checks signatures, as AWS and versitygw do.
	ContentMD5 bool

	// HTTPClient replaces the default client. It is used as given: the
	// AWS_CA_BUNDLE setting is applied only to the default client.
	HTTPClient aws.HTTPClient
}

// String describes c without its secrets, so that a Config can be logged.
func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "s3 bucket=%q prefix=%q", c.Bucket, c.Prefix)
	if c.Endpoint != "" {
		fmt.Fprintf(&b, " endpoint=%s", redactURL(c.Endpoint))
	}
	if c.Region != "" {
		fmt.Fprintf(&b, " region=%s", c.Region)
	}
	if c.ForcePathStyle {
		b.WriteString(" path-style")
	}
	if c.AccessKeyID != "" {
		fmt.Fprintf(&b, " access-key-id=%s", c.AccessKeyID)
	}
	if c.SecretAccessKey != "" {
		b.WriteString(" secret-access-key=REDACTED")
	}
	if c.SessionToken != "" {
		b.WriteString(" session-token=REDACTED")
	}
	return b.String()
}

// GoString keeps %#v from printing the secrets that String hides.
func (c Config) GoString() string { return "s3store.Config{" + c.String() + "}" }

// Store is an objstore.Store on one S3 bucket and prefix. It is safe for
// concurrent use.
type Store struct {
	client      *s3.Client
	bucket      string
	prefix      string // "" or ends in '/'
	endpoint    string // for messages: the endpoint or "AWS S3 region X"
	partSize    int64
	concurrency int
	threshold   int64
	contentMD5  bool
	// direct sends small single PUTs without the SDK's operation stack;
	// nil where they go through the SDK.
	direct *directPut

	// bufs bounds the part buffers held at once by all uploads whose body
	// cannot be read at an offset; pool recycles them.
	bufs chan struct{}
	pool sync.Pool
	// hashBufs recycles the read buffers of hashing passes.
	hashBufs sync.Pool
}

// New builds a Store from cfg. It makes no request: call Check to find out
// whether the bucket exists and the credentials are accepted.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, fmt.Errorf("s3 bucket %q: access key id and secret access key must be given together", cfg.Bucket)
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3 bucket %q: endpoint %q is not an http:// or https:// URL", cfg.Bucket, redactURL(cfg.Endpoint))
		}
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize || cfg.PartSize > maxPartSize {
		return nil, fmt.Errorf("s3 bucket %q: part size %d outside [%d, %d]", cfg.Bucket, cfg.PartSize, MinPartSize, int64(maxPartSize))
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("s3 bucket %q: concurrency %d below 1", cfg.Bucket, cfg.Concurrency)
	}
	if cfg.MultipartThreshold == 0 {
		cfg.MultipartThreshold = DefaultMultipartThreshold
	}
	if cfg.MultipartThreshold < 1 || cfg.MultipartThreshold > maxSinglePut {
		return nil, fmt.Errorf("s3 bucket %q: multipart threshold %d outside [1, %d]", cfg.Bucket, cfg.MultipartThreshold, int64(maxSinglePut))
	}

	// A plain *http.Client makes LoadDefaultConfig fail when AWS_CA_BUNDLE
	// is set ("unable to add custom RootCAs HTTPClient"), as it is on many
	// corporate hosts; a BuildableClient lets the SDK install the bundle.
	idle := max(awshttp.DefaultHTTPTransportMaxIdleConnsPerHost, 2*cfg.Concurrency)
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = idle
		// Headers and a small body leave in one write: with the default
		// 4 KiB buffer, every 4 KiB file took two.
		t.WriteBufferSize = 64 << 10
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		// The SDK's default is a CRC32 checksum on every upload and a
		// check on every download, which many S3-compatible servers reject
		// or do not return. ferry carries its own SHA-256 instead.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	// Failures reach the caller as errors; the SDK's own log lines (such
	// as its IMDS fallback warnings) would bypass ferry's logger.
	opts = append(opts, config.WithLogger(logging.Nop{}))
	if cfg.Endpoint != "" {
		// EC2 instance roles are for AWS itself. Against another server,
		// asking the instance metadata service for credentials only adds
		// seconds of timeouts, and a request to a link-local address, on
		// every machine that is not an EC2 instance.
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %q: load AWS configuration: %w", cfg.Bucket, err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}

	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
		if cfg.HTTPClient != nil {
			o.HTTPClient = cfg.HTTPClient
		}
		// One attempt and no retry quota: see the package comment. A zero
		// RetryMaxAttempts also stops AWS_MAX_ATTEMPTS from wrapping the
		// retryer back into a retrying one.
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 0
		o.DisableLogOutputChecksumValidationSkipped = true
	})

	clientOpts := client.Options()
	direct := newDirectPut(cfg.Endpoint, cfg.ForcePathStyle, clientOpts.HTTPClient, clientOpts.Credentials, clientOpts.Region, cfg.Bucket)

	where := redactURL(cfg.Endpoint)
	if where == "" {
		where = "AWS S3 region " + awsCfg.Region
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &Store{
		client:      client,
		bucket:      cfg.Bucket,
		prefix:      prefix,
		endpoint:    where,
		partSize:    cfg.PartSize,
		concurrency: cfg.Concurrency,
		threshold:   cfg.MultipartThreshold,
		contentMD5:  cfg.ContentMD5,
		direct:      direct,
		bufs:        make(chan struct{}, cfg.Concurrency),
	}, nil
}

// String names the bucket, prefix and endpoint.
func (s *Store) String() string {
	return fmt.Sprintf("s3 bucket %q prefix %q at %s", s.bucket, s.prefix, s.endpoint)
}

// Check makes one cheap request (a listing of at most one key under the
// prefix) and turns the most common setup mistakes into an error that says
// what to fix: a missing bucket, rejected credentials, no permission. Call it
// at startup so that a typo fails at once instead of in a retry loop.
func (s *Store) Check(ctx context.Context) error {
	_, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.bucket),
		Prefix:  aws.String(s.prefix),
		MaxKeys: aws.Int32(1),
	})
	if err == nil {
		return nil
	}
	return s.bucketError(err)
}

// redactURL hides a password written into an endpoint URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

func (s *Store) fullKey(key string) string { return s.prefix + key }
