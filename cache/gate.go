package cache

import (
	"sync"
	"time"
)

// opGate lets calls in until Close, and lets Close wait for the calls already in, so a backend
// is never used after it is closed. Unlike a sync.RWMutex it tolerates a Scan callback calling
// back into the store while Close waits: the inner call gets ErrClosed instead of deadlocking.
//
// pause holds new calls back while the cache switches from memory to badger (see reopen).
// A paused gate cannot tell a new call from one a Scan callback makes inside a call in
// progress, which the pause would wait for forever; so pause gives up after a while, lets
// the held calls in, and the switch tries again later.
type opGate struct {
	mu     sync.Mutex
	cond   *sync.Cond // signalled when active drops to 0, and when a pause ends
	active int
	paused bool
	closed bool
}

func newOpGate() *opGate {
	g := &opGate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enter reports whether the call may proceed; if so the caller must call leave. It waits
// while the gate is paused.
func (g *opGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && !g.closed {
		g.cond.Wait()
	}
	if g.closed {
		return false
	}
	g.active++
	return true
}

func (g *opGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 {
		g.cond.Broadcast()
	}
}

// pause holds new calls back and waits up to wait for the calls inside to leave. It reports
// whether the gate is now paused with no call inside (then the caller must call resume), or
// false if calls were still inside at the deadline or the gate is closed.
func (g *opGate) pause(wait time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.paused {
		return false
	}
	g.paused = true
	deadline := time.Now().Add(wait)
	timer := time.AfterFunc(wait, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer timer.Stop()
	for g.active > 0 && !g.closed && time.Now().Before(deadline) {
		g.cond.Wait()
	}
	if g.active > 0 || g.closed {
		g.paused = false
		g.cond.Broadcast()
		return false
	}
	return true
}

func (g *opGate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused = false
	g.cond.Broadcast()
}

// close shuts the gate and waits for the calls inside; it reports false if already closed.
func (g *opGate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	g.cond.Broadcast() // calls held by a pause give up
	for g.active > 0 {
		g.cond.Wait()
	}
	return true
}

func (g *opGate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}
