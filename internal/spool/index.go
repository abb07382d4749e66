package spool

import (
	"container/heap"
	"time"
)

// The in-memory index. The spool's owner holds the flock, so nothing else
// renames entries: after Open has walked the tree, the index is the truth,
// and Claim needs no directory listing or meta read to pick an entry.

type itemState int

const (
	stateReady   itemState = iota // in the queue dir, next try passed
	stateWaiting                  // in the queue dir, waiting out a backoff
	stateOut                      // in checkout/, held by an Entry
)

type item struct {
	id      ID
	size    int64
	next    time.Time
	state   itemState
	dropped bool // DropQueue removed it while it was checked out
	// own says no other name shares the entry's data file: this
	// process wrote it, or Open found it with one link. Done may keep
	// the directory of such an entry as a spare (see spare.go).
	own bool
	// meta is the entry's meta.json as this process wrote it, kept
	// until the entry is first claimed so that Claim need not read it
	// back; nil for the others (see maxKeptMetas).
	meta *meta
}

// queue indexes one queue's entries.
type queue struct {
	name    string
	ordered bool
	hasDir  bool // q/<name>/ and its checkout/ exist on disk

	ready   idHeap   // oldest ID first
	waiting timeHeap // earliest next try first
	out     map[ID]*item

	// bytes counts all entry data found in the queue's directory,
	// including entries Open could not index (corrupt, duplicate), so that
	// the spool's bound reflects the disk.
	bytes int64

	// changed is closed and replaced whenever an entry may have become
	// claimable, waking Wait.
	changed chan struct{}
}

func newQueue(name string, ordered bool) *queue {
	return &queue{name: name, ordered: ordered, out: map[ID]*item{}, changed: make(chan struct{})}
}

func (q *queue) len() int { return len(q.ready) + len(q.waiting) + len(q.out) }

func (q *queue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// put files a not-checked-out item as ready or waiting.
func (q *queue) put(it *item, now time.Time) {
	if it.next.After(now) {
		it.state = stateWaiting
		heap.Push(&q.waiting, it)
		return
	}
	it.state = stateReady
	heap.Push(&q.ready, it)
}

// promote moves items whose backoff ended into the ready heap.
func (q *queue) promote(now time.Time) {
	for len(q.waiting) > 0 && !q.waiting[0].next.After(now) {
		it := heap.Pop(&q.waiting).(*item)
		it.state = stateReady
		heap.Push(&q.ready, it)
	}
}

// take removes and returns the entry to hand out, or returns nil and when
// one may become ready (zero: only an enqueue or a finished entry can help).
func (q *queue) take(now time.Time) (*item, time.Time) {
	q.promote(now)
	if q.ordered {
		// Strict FIFO: only the oldest entry of the queue may be out, and
		// only it. A change set must not be uploaded while an older one is
		// still in flight or in backoff.
		if len(q.out) > 0 {
			return nil, time.Time{}
		}
		var head *item
		for _, it := range q.waiting {
			if head == nil || it.id < head.id {
				head = it
			}
		}
		if head != nil && (len(q.ready) == 0 || head.id < q.ready[0].id) {
			return nil, head.next
		}
	}
	if len(q.ready) > 0 {
		return heap.Pop(&q.ready).(*item), time.Time{}
	}
	if len(q.waiting) > 0 {
		return nil, q.waiting[0].next
	}
	return nil, time.Time{}
}

// clear forgets every entry, marking checked-out ones dropped.
func (q *queue) clear() {
	for _, it := range q.out {
		it.dropped = true
	}
	q.ready, q.waiting, q.out = nil, nil, map[ID]*item{}
	q.bytes = 0
	q.hasDir = false
}

type idHeap []*item

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i].id < h[j].id }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(*item)) }
func (h *idHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

type timeHeap []*item

func (h timeHeap) Len() int { return len(h) }
func (h timeHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	return h[i].id < h[j].id
}
func (h timeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)   { *h = append(*h, x.(*item)) }
func (h *timeHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
