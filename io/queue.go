package io

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/apmkit/apmkit/point"
)

// ErrQueueFull is returned (wrapped, with the number of dropped points) by Feed when a
// category queue stayed full for feed_timeout, or the caller's context ended first, and
// points were dropped. Test it with errors.Is.
var ErrQueueFull = errors.New("io: queue full, points dropped")

// ErrNotRunning is returned by Feed before Start and after Stop; the points are dropped and
// counted (reason not_running).
var ErrNotRunning = errors.New("io: uploader not running, points dropped")

// pointQueue is a category's bounded FIFO, counted in points (not Feed calls), so memory is
// bounded whatever the callers' slice sizes. Feeders wait for room up to a deadline; the
// batcher never waits on it. All waiting is on channels, so it honours contexts.
type pointQueue struct {
	max int

	mu     sync.Mutex
	items  [][]*point.Point
	n      int  // points in items
	closed bool // no more pushes; pop drains what is left
	// roomFreed is closed (and replaced) whenever pop makes room: a broadcast to every
	// waiting feeder, unlike a single-slot signal that would wake only one of them.
	roomFreed chan struct{}
	// ready holds one token when points arrived since the batcher last looked.
	ready chan struct{}
}

func newPointQueue(max int) *pointQueue {
	return &pointQueue{max: max, roomFreed: make(chan struct{}), ready: make(chan struct{}, 1)}
}

// errQueueClosed tells Feed the uploader is stopping.
var errQueueClosed = errors.New("io: queue closed")

// push adds pts, waiting up to timeout (or ctx) for room. It can accept a prefix of pts and
// reports how many it took. The queue keeps its own copy of the slice (not of the points),
// so callers may reuse their slice.
func (q *pointQueue) push(ctx context.Context, pts []*point.Point, timeout time.Duration) (int, error) {
	accepted := 0
	var deadline *time.Timer
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return accepted, errQueueClosed
		}
		if free := q.max - q.n; free > 0 {
			k := min(free, len(pts)-accepted)
			q.items = append(q.items, append([]*point.Point(nil), pts[accepted:accepted+k]...))
			q.n += k
			accepted += k
			q.signalReady()
		}
		if accepted == len(pts) {
			q.mu.Unlock()
			return accepted, nil
		}
		wait := q.roomFreed
		q.mu.Unlock()

		if deadline == nil {
			deadline = time.NewTimer(timeout)
			defer deadline.Stop()
		}
		select {
		case <-wait:
		case <-deadline.C:
			return accepted, ErrQueueFull
		case <-ctx.Done():
			return accepted, errors.Join(ErrQueueFull, ctx.Err())
		}
	}
}

func (q *pointQueue) signalReady() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop appends up to max points to dst[:0] without waiting (the batcher reuses one buffer).
// done is true once the queue is closed and empty: the batcher's signal to flush and exit.
func (q *pointQueue) pop(dst []*point.Point, max int) (pts []*point.Point, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	pts = dst[:0]
	for len(q.items) > 0 && len(pts) < max {
		head := q.items[0]
		k := min(len(head), max-len(pts))
		pts = append(pts, head[:k]...)
		if k == len(head) {
			q.items[0] = nil
			q.items = q.items[1:]
		} else {
			q.items[0] = head[k:]
		}
	}
	if len(pts) > 0 {
		q.n -= len(pts)
		close(q.roomFreed)
		q.roomFreed = make(chan struct{})
	}
	return pts, q.closed && q.n == 0
}

// close stops pushes and wakes the batcher so it drains and exits.
func (q *pointQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	close(q.roomFreed) // waiting feeders see closed on their next look
	q.roomFreed = make(chan struct{})
	q.signalReady()
}

func (q *pointQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
