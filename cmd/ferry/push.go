package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/uploader"
)

// pusher carries out one 'ferry push'.
type pusher struct {
	*app
	url   string
	dir   string // the files spool
	files []pushFile
	store objstore.Store // the replica, with -wait
	// sealed says each file's path holds its ciphertext (-key-file), to
	// be stored as it is.
	sealed bool
}

func (p *pusher) push(ctx context.Context, wait bool) error {
	sp, err := spool.Open(p.dir, spool.Options{})
	var inUse *spool.InUseError
	switch {
	case errors.As(err, &inUse):
		return p.handOff(ctx, inUse.Pid, wait)
	case err != nil:
		return err
	}
	defer sp.Close()
	ids := make(map[spool.ID]pushFile, len(p.files))
	for _, f := range p.files {
		if err := uploader.CheckKey(f.key); err != nil {
			return err
		}
		id, err := sp.EnqueueFile(uploader.FilesQueue, p.job(f), f.path, false)
		if err != nil {
			return fmt.Errorf("spool %s: %w (files spooled before it stay queued)", f.path, err)
		}
		ids[id] = f
	}
	if !wait {
		fmt.Fprintf(p.stderr, "ferry push: spooled %d file(s) in %s; no daemon is running there, so they upload when 'ferry replicate' starts on it or with 'ferry push -wait'\n", len(ids), p.dir)
		return nil
	}
	return p.ship(ctx, sp, ids)
}

// ship runs an uploader on the spool this process owns until every entry
// in ids has reached the replica or failed for good.
func (p *pusher) ship(ctx context.Context, sp *spool.Spool, ids map[spool.ID]pushFile) error {
	var total int64
	for _, f := range ids {
		total += f.size
	}
	bar := newProgress(p.stderr, total, "uploading")
	var (
		mu      sync.Mutex
		pending = maps.Clone(ids)
		allDone = make(chan struct{})
	)
	u := uploader.New(sp, func(ctx context.Context, url string) (objstore.Store, error) {
		if url == p.url {
			return p.store, nil
		}
		// Entries left by an earlier push to another replica ship too.
		return target.OpenURL(ctx, url, target.Options{})
	}, uploader.Options{
		Log: p.log,
		Shipped: func(id spool.ID, _ uploader.Job) {
			mu.Lock()
			defer mu.Unlock()
			if f, ok := pending[id]; ok {
				delete(pending, id)
				bar.add(f.size)
				if len(pending) == 0 {
					close(allDone)
				}
			}
		},
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- u.Run(runCtx) }()

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-allDone:
			stop()
			bar.finish()
			if err := <-runErr; err != nil {
				return err
			}
			fmt.Fprintf(p.stderr, "ferry push: %d file(s) durable in %s\n", len(ids), p.url)
			return nil
		case err := <-runErr:
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("uploader stopped with %d file(s) not yet shipped (they stay spooled in %s): %w", p.left(&mu, pending), p.dir, err)
		case <-tick.C:
			if err := p.failedOnes(sp, &mu, pending); err != nil {
				stop()
				<-runErr
				return err
			}
		}
	}
}

func (p *pusher) left(mu *sync.Mutex, pending map[spool.ID]pushFile) int {
	mu.Lock()
	defer mu.Unlock()
	return len(pending)
}

// failedOnes returns an error naming the first of our entries that moved to
// the failed queue, with the reason the store gave.
func (p *pusher) failedOnes(sp *spool.Spool, mu *sync.Mutex, pending map[spool.ID]pushFile) error {
	failed, err := sp.Failed()
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	for _, fe := range failed {
		if f, ok := pending[fe.ID]; ok {
			return fmt.Errorf("upload of %s to %s failed for good (kept in the spool's failed queue): %s", f.path, p.url, fe.Reason)
		}
	}
	return nil
}

// handOff gives the files to the daemon that owns the spool. With wait it
// then watches the replica until each file is there with the right
// checksum: the daemon's confirmation, observed where it matters.
func (p *pusher) handOff(ctx context.Context, pid int, wait bool) error {
	sums := make(map[string]string, len(p.files))
	for _, f := range p.files {
		if err := spool.Handoff(p.dir, uploader.FilesQueue, p.job(f), f.path); err != nil {
			return err
		}
		if wait {
			sum, err := fileSHA256(f.path)
			if err != nil {
				return err
			}
			sums[f.key] = sum
		}
	}
	if !wait {
		fmt.Fprintf(p.stderr, "ferry push: handed %d file(s) to the ferry daemon (pid %d) on %s\n", len(p.files), pid, p.dir)
		return nil
	}
	var total int64
	for _, f := range p.files {
		total += f.size
	}
	bar := newProgress(p.stderr, total, "uploading")
	pending := slices.Clone(p.files)
	for len(pending) > 0 {
		next := pending[:0]
		for _, f := range pending {
			info, err := p.store.Head(ctx, f.key)
			switch {
			case err == nil && info.SHA256 == sums[f.key] && info.Size == f.size:
				bar.add(f.size)
			case err == nil || objstore.IsNotFound(err):
				next = append(next, f)
			default:
				return fmt.Errorf("check %s in %s: %w", f.key, p.url, err)
			}
		}
		pending = next
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d file(s) not yet in %s (the daemon keeps shipping them): %w", len(pending), p.url, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	bar.finish()
	fmt.Fprintf(p.stderr, "ferry push: %d file(s) durable in %s\n", len(p.files), p.url)
	return nil
}

// job is the spool entry's payload for f.
func (p *pusher) job(f pushFile) uploader.Job {
	return uploader.Job{Key: f.key, Pending: []string{p.url}, Sealed: p.sealed}
}

// sealFiles encrypts each file for its key into dir, and returns the
// files to push in their place and what removes them. The spool then
// holds only ciphertext, and whichever process ships it (this one, or a
// daemon that has no key) stores it as it is.
func sealFiles(ring *seal.Ring, files []pushFile, dir string) ([]pushFile, func(), error) {
	var made []string
	cleanup := func() {
		for _, p := range made {
			os.Remove(p)
		}
	}
	out := make([]pushFile, len(files))
	for i, f := range files {
		tmp, err := os.CreateTemp(dir, ".ferry-push-sealed-*")
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("encrypt %s: %w", f.path, err)
		}
		made = append(made, tmp.Name())
		err = sealOne(ring, f, tmp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("encrypt %s: %w", f.path, err)
		}
		fi, err := os.Stat(tmp.Name())
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		out[i] = pushFile{path: tmp.Name(), key: f.key, size: fi.Size()}
	}
	return out, cleanup, nil
}

func sealOne(ring *seal.Ring, f pushFile, dst *os.File) error {
	src, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer src.Close()
	return seal.Encrypt(ring, f.key, dst, src)
}
