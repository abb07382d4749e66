// Package target turns a replica (a URL plus optional credentials) into the
// objstore.Store that every part of ferry writes through: the backend the
// URL's scheme names, wrapped in retries, timeouts, rate limits and metrics.
// It is the one place that knows which backend serves which scheme.
package target

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/seal"
)

// Options are the settings shared by every target of one process.
type Options struct {
	Retry    objstore.RetryPolicy
	Timeouts objstore.Timeouts
	// Limits apply to every target; a replica's own max-requests-per-second
	// or max-upload-bytes-per-second replaces the matching one, field by
	// field. Each target gets buckets of its own: a limit caps one
	// replica, not the process.
	Limits objstore.Limits
	// Metrics, when set, records every call under the scheme's name.
	Metrics *objstore.Metrics
	// Check makes Open fail at once for a bucket that does not exist or
	// credentials that are refused, rather than leaving the first upload
	// to find out inside a retry loop.
	Check bool
	// Unreachable, when set with Check, takes a check that failed for a
	// reason that may pass by itself (no answer, a timeout, a 5xx), and
	// Open succeeds: a daemon started before the network is up must still
	// capture into its spool. Without it every failed check fails Open.
	Unreachable func(err error)
	// MustExist makes Open fail for a file:// replica whose directory does
	// not exist, instead of creating it: commands that only read a replica
	// must not leave an empty one behind a typo.
	MustExist bool
	// TempDir holds the ciphertext of large objects on their way to a
	// replica with encryption on; "" means the system's.
	TempDir string
	// Pool, when positive, bounds the calls in flight on each store
	// opened (objstore.WithPool).
	Pool int
}

// defaultCheckTimeout bounds the check of a bucket at Open when the
// options set no timeout of their own.
const defaultCheckTimeout = 30 * time.Second

// Open returns the store behind replica r, encrypting and decrypting with
// r.Keys when set.
func Open(ctx context.Context, r config.Replica, o Options) (objstore.Store, error) {
	base, err := OpenShared(ctx, r, o)
	if err != nil {
		return nil, err
	}
	return Under(base, "", r.Keys, o.TempDir), nil
}

// OpenShared returns the store behind replica r without encryption, for
// many replicas under r's URL to share through Under: one client, one
// set of limits and, with Pool, one bound on the calls in flight.
func OpenShared(ctx context.Context, r config.Replica, o Options) (objstore.Store, error) {
	backend, err := openBackend(ctx, r, o)
	if err != nil {
		return nil, err
	}
	return objstore.Stack(backend, objstore.StackOptions{
		Backend:  r.Target.Scheme,
		Retry:    o.Retry,
		Timeouts: o.Timeouts,
		Limits:   limits(r, o.Limits),
		Metrics:  o.Metrics,
		Pool:     o.Pool,
	}), nil
}

// Under returns the replica at rel (a slash-separated path, "" for the
// shared store's own URL) under a store from OpenShared: the same objects
// as Open gives for the URL joined with rel, encrypted with keys when
// set.
func Under(shared objstore.Store, rel string, keys *seal.Ring, tempDir string) objstore.Store {
	// Every replica is read through seal, with or without keys: without,
	// an encrypted object fails with one line saying so, rather than as
	// a format error deep in a restore. Seal sits above the prefix, so
	// that an object's name, which its encryption binds, is the same as
	// through Open of the joined URL.
	return seal.New(objstore.WithPrefix(shared, rel), keys, tempDir)
}

// limits are the process's limits with the replica's own in their place.
// The replica's win because they are the narrower setting: one config
// entry that names this store, against a default for every store.
func limits(r config.Replica, l objstore.Limits) objstore.Limits {
	if r.MaxRequestsPerSecond > 0 {
		l.RequestsPerSecond = r.MaxRequestsPerSecond
	}
	if r.MaxUploadBytesPerSecond > 0 {
		l.UploadBytesPerSecond = r.MaxUploadBytesPerSecond
	}
	return l
}

// OpenURL is Open for a bare replica URL with the standard AWS credential
// chain, as given on a command line.
func OpenURL(ctx context.Context, rawURL string, o Options) (objstore.Store, error) {
	t, err := config.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return Open(ctx, config.Replica{Target: t}, o)
}

func openBackend(ctx context.Context, r config.Replica, o Options) (objstore.Store, error) {
	t := r.Target
	switch t.Scheme {
	case "file":
		if o.MustExist {
			if fi, err := os.Stat(t.Path); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("replica %s: no such directory", t)
			}
		}
		s, err := filestore.New(t.Path)
		if err != nil {
			return nil, fmt.Errorf("replica %s: %w", t, err)
		}
		return s, nil
	case "s3":
		s, err := s3store.New(ctx, s3store.Config{
			Bucket:          t.Bucket,
			Prefix:          t.Prefix,
			Endpoint:        t.Endpoint,
			Region:          t.Region,
			ForcePathStyle:  t.ForcePathStyle,
			AccessKeyID:     r.AccessKeyID.Reveal(),
			SecretAccessKey: r.SecretAccessKey.Reveal(),
			PartSize:        r.PartSize,
		})
		if err != nil {
			return nil, fmt.Errorf("replica %s: %w", t, err)
		}
		if o.Check {
			// Bounded like any call: a server that takes the connection
			// and never answers must not hold the start up for ever.
			cctx, cancel := context.WithTimeout(ctx, cmp.Or(o.Timeouts.Op, defaultCheckTimeout))
			err := s.Check(cctx)
			cancel()
			if err != nil {
				err = fmt.Errorf("replica %s: %w", t, err)
				var be *s3store.BucketError
				if o.Unreachable == nil || !errors.As(err, &be) || !be.Transient() {
					return nil, err
				}
				o.Unreachable(err)
			}
		}
		return s, nil
	default:
		return nil, fmt.Errorf("replica %s: unknown scheme %q", t, t.Scheme)
	}
}
