package lease

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// A Lease gives one holder the right to write under a key (a round of
// uploads, a replica), for at most one holder at a time across machines,
// as long as every machine's clock is roughly right. The object store is
// the only coordinator: there is no server of ferry's own to ask.
//
// The lease is one object holding JSON {holder, expires, token}. Acquire
// creates it with a create-only Put, or takes over a record that has
// expired or been released with a compare-and-swap Put on the etag it
// read; Renew and Release are compare-and-swap Puts on the etag of the
// holder's own last write. So every change is conditional on the store, and
// two machines racing for the same lease cannot both win.
//
// Clocks and stalled writers: see the package documentation.
type Lease struct {
	store  objstore.Store
	key    string
	holder string
	token  string
	ttl    time.Duration
	now    func() time.Time

	mu       sync.Mutex
	etag     string
	expires  time.Time
	released bool
	// end is set once the lease was released, or a write found the
	// record taken over or released: from then on it is never valid again.
	end error
	// changed is closed, and replaced, whenever expires, released or
	// lost changes, so that a writer waiting for a renewal wakes at once.
	changed chan struct{}
}

// leaseRecord is the content of a lease object.
type leaseRecord struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
	// Token is random per Acquire. It makes every record's bytes, and so
	// its etag, unique (two records with equal bytes would share an etag
	// and defeat compare-and-swap), and lets a holder recognise its own
	// write when a Put timed out after the store applied it.
	Token    string `json:"token"`
	Released bool   `json:"released,omitempty"`
}

// Option changes how Acquire behaves.
type Option func(*Lease)

// WithClock makes the lease read the time from now instead of time.Now,
// for tests that move time without waiting.
func WithClock(now func() time.Time) Option {
	return func(l *Lease) { l.now = now }
}

const (
	maxHolderLen    = 256
	maxLeaseBytes   = 64 << 10
	acquireAttempts = 5
	deleteHint      = "if no ferry holds it, delete the object"
)

// Acquire takes the lease held in the object key for holder, for ttl.
// If another holder has it and it has not expired, the error is a
// *HeldError matching ErrHeld that names the holder and expiry.
func Acquire(ctx context.Context, store objstore.Store, key, holder string, ttl time.Duration, opts ...Option) (*Lease, error) {
	if key == "" || strings.HasSuffix(key, "/") {
		return nil, fmt.Errorf("lease key %q does not name an object", key)
	}
	if holder == "" || len(holder) > maxHolderLen {
		return nil, fmt.Errorf("lease %s: holder name must be 1 to %d bytes", key, maxHolderLen)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("lease %s: ttl %s is not positive", key, ttl)
	}
	var tok [16]byte
	rand.Read(tok[:])
	l := &Lease{store: store, key: key, holder: holder, token: hex.EncodeToString(tok[:]), ttl: ttl, now: time.Now,
		changed: make(chan struct{})}
	for _, o := range opts {
		o(l)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for range acquireAttempts {
		err := l.put(ctx, false, objstore.PutOptions{IfNoneMatch: true})
		if !objstore.IsPreconditionFailed(err) {
			return l.orNil(err)
		}
		rec, etag, err := readLease(ctx, store, l.key)
		if objstore.IsNotFound(err) {
			continue // deleted by hand since the create failed: create again
		}
		if err != nil {
			return nil, err
		}
		if rec.Token == l.token && !rec.Released {
			// Our own create, applied by the store although the answer
			// was lost, and retried by a retrying store underneath.
			l.etag, l.expires = etag, rec.Expires
			return l, nil
		}
		if !rec.Released && l.now().Before(rec.Expires) {
			return nil, &HeldError{Key: l.key, Holder: rec.Holder, Expires: rec.Expires}
		}
		err = l.put(ctx, false, objstore.PutOptions{IfMatch: etag})
		if !objstore.IsPreconditionFailed(err) && !objstore.IsNotFound(err) {
			return l.orNil(err)
		}
		// Another machine took it over between the read and the write;
		// the next round reads who.
	}
	return nil, fmt.Errorf("lease %s: still contended after %d attempts; try again", l.key, acquireAttempts)
}

func (l *Lease) orNil(err error) (*Lease, error) {
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", l.key, err)
	}
	return l, nil
}

// Key returns the key of the lease object.
func (l *Lease) Key() string { return l.key }

// Holder returns the holder name the lease was acquired for.
func (l *Lease) Holder() string { return l.holder }

// Expires returns the expiry of the holder's last successful write.
func (l *Lease) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expires
}

// Renew extends the lease to ttl from now. It fails with ErrLost if
// another holder has taken the lease over or it was released.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return fmt.Errorf("lease %s: renew after release: %w", l.key, ErrLost)
	}
	err := l.swap(ctx, false)
	if errors.Is(err, ErrLost) {
		l.end = err
		l.notify()
	}
	return err
}

// Release gives the lease up so that another holder can take it at once.
// It writes a released record with compare-and-swap rather than deleting
// the object, because an S3 delete cannot be made conditional: a delete
// racing a takeover could remove the new holder's lease. Releasing a lease
// that was taken over fails with ErrLost; releasing twice is a no-op.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	err := l.swap(ctx, true)
	if err == nil || errors.Is(err, ErrLost) {
		l.released = true
		if l.end == nil {
			l.end = fmt.Errorf("lease %s of %q: %w: released", l.key, l.holder, ErrLost)
			if err != nil {
				l.end = err
			}
		}
		l.notify()
	}
	return err
}

// Valid reports whether the holder may still write: the lease was neither
// released nor lost, and by the local clock it runs for more than margin
// yet. The margin leaves room for the write about to start, and for the
// clocks of other machines to differ from this one.
func (l *Lease) Valid(margin time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end == nil && l.now().Add(margin).Before(l.expires)
}

// Changed returns a channel that is closed at the next change of the
// lease: a renewal, a release, a loss. Call it before Valid, then wait on
// it, so that no change falls between the two.
func (l *Lease) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Err returns nil while the lease may still be renewed, and an error
// matching ErrLost once it was released, or a write found it taken over or
// released by someone else.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}

// notify wakes whoever waits on Changed. The caller holds l.mu.
func (l *Lease) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// swap replaces the holder's record if it is still the one the holder
// last wrote.
func (l *Lease) swap(ctx context.Context, release bool) error {
	for range 2 {
		err := l.put(ctx, release, objstore.PutOptions{IfMatch: l.etag})
		if err == nil {
			return nil
		}
		if !objstore.IsPreconditionFailed(err) && !objstore.IsNotFound(err) {
			return fmt.Errorf("lease %s: %w", l.key, err)
		}
		// The etag moved. If the record still carries our token, the
		// mover was a write of ours that the store applied while
		// reporting a failure (a timeout after the server committed it):
		// adopt it and try again. Anything else means someone else holds
		// the lease now.
		rec, etag, rerr := readLease(ctx, l.store, l.key)
		switch {
		case rerr != nil:
			return fmt.Errorf("lease %s of %q: %w: its record changed (%v)", l.key, l.holder, ErrLost, rerr)
		case rec.Released:
			return fmt.Errorf("lease %s of %q: %w: it was released by %q", l.key, l.holder, ErrLost, rec.Holder)
		case rec.Token != l.token:
			return fmt.Errorf("lease %s of %q: %w: it is now held by %q until %s", l.key, l.holder, ErrLost,
				rec.Holder, rec.Expires.UTC().Format(time.RFC3339Nano))
		}
		l.etag = etag
	}
	return fmt.Errorf("lease %s of %q: %w: its record keeps changing", l.key, l.holder, ErrLost)
}

// put writes the holder's record. The caller holds l.mu.
func (l *Lease) put(ctx context.Context, release bool, opts objstore.PutOptions) error {
	now := l.now()
	rec := leaseRecord{Holder: l.holder, Expires: now.Add(l.ttl), Token: l.token, Released: release}
	if release {
		rec.Expires = now
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	info, err := l.store.Put(ctx, l.key, bytes.NewReader(data), opts)
	if err != nil {
		return err
	}
	if info.ETag == "" {
		// Without an etag the next compare-and-swap has nothing to
		// compare against; reading it back with Head could return a
		// rival's etag and let both believe they hold the lease.
		return errors.New("the store returned no etag; leases need a store with conditional writes")
	}
	l.etag, l.expires = info.ETag, rec.Expires
	l.notify()
	return nil
}

// readLease reads a lease record and the etag it was read with.
func readLease(ctx context.Context, store objstore.Store, key string) (leaseRecord, string, error) {
	rc, info, err := store.Get(ctx, key, nil)
	if err != nil {
		return leaseRecord{}, "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxLeaseBytes+1))
	if err != nil {
		return leaseRecord{}, "", fmt.Errorf("lease %s: %w", key, err)
	}
	if len(data) > maxLeaseBytes {
		return leaseRecord{}, "", fmt.Errorf("lease %s is larger than %d bytes, so not a lease; %s", key, maxLeaseBytes, deleteHint)
	}
	var rec leaseRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return leaseRecord{}, "", fmt.Errorf("lease %s is unreadable (%v); %s", key, err, deleteHint)
	}
	if rec.Token == "" || rec.Holder == "" || rec.Expires.IsZero() {
		return leaseRecord{}, "", fmt.Errorf("lease %s lacks a holder, token or expiry; %s", key, deleteHint)
	}
	if info.ETag == "" {
		return leaseRecord{}, "", fmt.Errorf("lease %s: the store returned no etag; leases need a store with conditional writes", key)
	}
	return rec, info.ETag, nil
}

// Record is what a lease object says, for a reader that does not hold it:
// a standby watching for the primary's lease to lapse.
type Record struct {
	Holder   string
	Expires  time.Time
	Released bool
}

// Free reports whether the lease is free to take at now: released, or
// expired by the reader's clock (see the package documentation for what
// clock skew does to that).
func (r Record) Free(now time.Time) bool { return r.Released || !now.Before(r.Expires) }

// Read returns the record in the lease object key. A missing object is an
// error matching objstore.ErrNotFound.
func Read(ctx context.Context, store objstore.Store, key string) (Record, error) {
	rec, _, err := readLease(ctx, store, key)
	if err != nil {
		return Record{}, err
	}
	return Record{Holder: rec.Holder, Expires: rec.Expires, Released: rec.Released}, nil
}
