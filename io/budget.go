package io

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// byteBudget bounds the line protocol the uploader holds in memory (io.queue_max_mb): open
// batches, batches waiting for an output, and their gzip forms. Feed acquires the bytes of
// its encoded lines before appending them and waits for room when the budget is spent; a
// batch gives its bytes back when the last output holding it has delivered or spilled it.
//
// Waiters are served first come, first served. With hundreds of gRPC handlers waiting, a
// broadcast that lets them race for each release left some of them waiting past their
// client's deadline (6 s for a Java agent's span batch) while others went through; in order,
// a waiter waits only for the bytes requested before it.
type byteBudget struct {
	max int64

	mu      sync.Mutex
	used    int64
	closed  bool
	waiters list.List // of *budgetWaiter, oldest first
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when granted, or when the budget closes (err set)
	err   error
}

// errBudgetClosed tells Feed the uploader is stopping.
var errBudgetClosed = errors.New("io: uploader stopping")

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max}
}

// fitsLocked: n more bytes fit. A request larger than the whole budget fits when nothing
// else is held, so it is delivered alone rather than refused forever.
func (b *byteBudget) fitsLocked(n int64) bool {
	return b.used+n <= b.max || b.used == 0
}

// acquire takes n bytes, waiting in line until they fit, the deadline fires or ctx ends
// (ErrQueueFull), or the budget closes (errBudgetClosed).
func (b *byteBudget) acquire(ctx context.Context, n int64, deadline func() <-chan time.Time) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errBudgetClosed
	}
	if b.waiters.Len() == 0 && b.fitsLocked(n) {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()
	var err error
	select {
	case <-w.ready:
		return w.err
	case <-deadline():
		err = ErrQueueFull
	case <-ctx.Done():
		err = errors.Join(ErrQueueFull, ctx.Err())
	}
	return b.giveUp(w, elem, err)
}

// giveUp leaves the line; a grant that raced with the timeout is kept rather than undone.
func (b *byteBudget) giveUp(w *budgetWaiter, elem *list.Element, err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		return w.err
	default:
	}
	b.waiters.Remove(elem)
	b.grantLocked() // the next in line may fit where this one did not
	return err
}

// grantLocked serves waiters in order while the first one fits.
func (b *byteBudget) grantLocked() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if !b.fitsLocked(w.n) {
			return
		}
		b.used += w.n
		b.waiters.Remove(e)
		close(w.ready)
	}
}

// add accounts bytes that are already allocated (a batch's gzip form): it never waits, so
// the budget may be exceeded by them, and Feed waits until they are released.
func (b *byteBudget) add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used += n
}

func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.grantLocked()
}

// close fails every waiting and later acquire: the uploader is stopping.
func (b *byteBudget) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		w.err = errBudgetClosed
		b.waiters.Remove(e)
		close(w.ready)
	}
}

func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
