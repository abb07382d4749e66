package snapshot

import (
	"context"
	"sync"
)

// forEach runs work on every item with at most parallelism calls at once.
// newWorker is called once per worker, so each can own its buffers. The
// first error stops the rest, through the context work receives, and is
// returned.
func forEach(ctx context.Context, parallelism int, items []int, newWorker func() func(ctx context.Context, item int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	ch := make(chan int)
	for range max(1, min(parallelism, len(items))) {
		work := newWorker()
		wg.Go(func() {
			for item := range ch {
				if err := work(ctx, item); err != nil {
					once.Do(func() { firstErr = err })
					cancel()
					return
				}
			}
		})
	}
	var fed error
feed:
	for _, item := range items {
		select {
		case ch <- item:
		case <-ctx.Done():
			fed = ctx.Err()
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return fed
}

// parallelismOr returns p, or def when p is not positive.
func parallelismOr(p, def int) int {
	if p > 0 {
		return p
	}
	return def
}
