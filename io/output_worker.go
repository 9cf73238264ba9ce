package io

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// outputWorker owns one output: a bounded in-memory queue of batches, a disk spill and the
// goroutine that delivers them, so one slow or failing output never blocks another output
// or the batchers.
//
// Ordering: the output's batches form one FIFO whose older part may be on disk (the spill)
// and whose newer part is in memory. Invariant, under mu: while the spill is not empty the
// memory queue is empty. Whenever a batch must be spilled, the memory queue moves to the
// spill tail with it, and new batches go to the spill tail until it is drained. A batch the
// worker was sending when things went wrong is older than everything queued, so it goes to
// the spill head. Delivery therefore stays in feed order and, apart from a request cut off
// by the stop deadline after the server got it, each batch is delivered once.
type outputWorker struct {
	name     string
	typ      string
	cfg      OutputConfig
	sender   sender
	spill    *spillQueue
	counters *outputCounters
	log      *slog.Logger
	permLog  logLimiter // permanent errors: at most one log line a minute
	spillLog logLimiter // spill write failures

	mu       sync.Mutex
	memory   []*batch
	exited   bool // the worker is gone: everything goes to the spill
	spilling bool // for one log line per outage, not one per batch

	wake     chan struct{} // one token: memory got a batch
	draining chan struct{} // closed by Stop: deliver what is in memory, then exit
	ctx      context.Context
	cancel   context.CancelFunc // Stop's deadline: abort requests, spill, exit
	done     chan struct{}

	probe backoff // delays between attempts on the spill's oldest batch
}

func newOutputWorker(cfg OutputConfig, s sender, spill *spillQueue, counters *outputCounters, log *slog.Logger) *outputWorker {
	ctx, cancel := context.WithCancel(context.Background())
	return &outputWorker{
		name:     cfg.Name,
		typ:      cfg.Type,
		cfg:      cfg,
		sender:   s,
		spill:    spill,
		counters: counters,
		log:      log.With("output", cfg.Name),
		permLog:  logLimiter{every: time.Minute},
		spillLog: logLimiter{every: time.Minute},
		wake:     make(chan struct{}, 1),
		draining: make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		probe:    backoff{initial: cfg.RetryInitial, max: cfg.RetryMax},
	}
}

// enqueue takes a batch without waiting on the output: into memory when there is room and
// nothing is spilled, else to the spill tail (with what memory holds, to keep the order).
// Spilling costs the calling batcher one synced file write per batch while this output is
// down: a bounded disk cost, never a wait on the network or on another output.
func (w *outputWorker) enqueue(b *batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.exited && w.spill.empty() && len(w.memory) < w.cfg.QueueMaxBatches {
		w.memory = append(w.memory, b)
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return
	}
	w.moveMemoryToSpillLocked("the memory queue is full: the output is slow or failing")
	w.spillLocked(b, false)
}

// spillFront puts back a batch the worker could not deliver, ahead of everything queued.
func (w *outputWorker) spillFront(b *batch, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteSpillingLocked(why)
	w.spillLocked(b, true)
	w.moveMemoryToSpillLocked(why)
}

func (w *outputWorker) moveMemoryToSpillLocked(why string) {
	if len(w.memory) == 0 {
		return
	}
	w.noteSpillingLocked(why)
	for i, b := range w.memory {
		w.spillLocked(b, false)
		w.memory[i] = nil
	}
	w.memory = w.memory[:0]
}

func (w *outputWorker) spillLocked(b *batch, front bool) {
	w.noteSpillingLocked("batches are queued on disk behind older spilled batches")
	if err := w.spill.push(b, front); err != nil {
		w.counters.lastErr.set(err)
		if ok, n := w.spillLog.allow(); ok {
			w.log.Error("io: spill: batch dropped", "err", err, "points", b.points, "suppressed", n)
		}
		return
	}
	w.counters.spilledBatches.Add(1)
}

// noteSpillingLocked logs the start of an outage once.
func (w *outputWorker) noteSpillingLocked(why string) {
	if w.spilling || w.exited {
		return
	}
	w.spilling = true
	text, _ := w.counters.lastErr.get()
	w.log.Warn("io: output not keeping up, spilling batches to disk until it recovers",
		"reason", why, "last_error", text)
}

// next returns the next memory batch, or spilled=true when the spill must be drained first.
func (w *outputWorker) next() (b *batch, spilled bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.spill.empty() {
		return nil, true
	}
	if len(w.memory) == 0 {
		return nil, false
	}
	b = w.memory[0]
	w.memory[0] = nil
	w.memory = w.memory[1:]
	return b, false
}

func (w *outputWorker) run() {
	defer close(w.done)
	defer w.exit()
	for {
		b, spilled := w.next()
		switch {
		case spilled:
			// A spilled batch is safe on disk: on stop, leave it for the next run.
			if w.stopping() || !w.deliverSpilled() {
				return
			}
		case b != nil:
			w.deliverFresh(b)
		default:
			if w.stopping() {
				return
			}
			select {
			case <-w.wake:
			case <-w.draining:
			case <-w.ctx.Done():
			}
		}
	}
}

// exit spills what is left in memory (only after the stop deadline) and marks the worker
// gone, so a late batch goes straight to the spill.
func (w *outputWorker) exit() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.moveMemoryToSpillLocked("stopping: the output did not take these batches before the deadline")
	w.exited = true
}

func (w *outputWorker) stopping() bool {
	select {
	case <-w.draining:
		return true
	case <-w.ctx.Done():
		return true
	default:
		return false
	}
}

// deliverFresh sends a batch from memory, retrying with backoff up to retry_max_elapsed;
// then (or when stopping) it goes to the spill head.
func (w *outputWorker) deliverFresh(b *batch) {
	start := time.Now()
	bo := backoff{initial: w.cfg.RetryInitial, max: w.cfg.RetryMax}
	for {
		err := w.sendOnce(b)
		if err == nil || isPermanent(err) {
			return
		}
		// While stopping, a failing output is not retried: its batches go straight to the
		// spill, so a dead output cannot hold shutdown for the whole stop_timeout.
		if w.stopping() {
			w.spillFront(b, "stopping while the output fails")
			return
		}
		wait := w.retryDelay(&bo, err)
		if time.Since(start)+wait > w.cfg.RetryMaxElapsed {
			w.spillFront(b, "retry_max_elapsed reached")
			return
		}
		w.counters.retries.Add(1)
		if !w.sleep(wait) {
			w.spillFront(b, "stopping while the output fails")
			return
		}
	}
}

// deliverSpilled makes one attempt with the spill's oldest batch, which doubles as the
// probe of a failed output; it reports false when the worker should exit.
func (w *outputWorker) deliverSpilled() bool {
	e, ok := w.spill.peek()
	if !ok {
		return true
	}
	b, err := w.spill.load(e)
	if err != nil {
		w.spill.complete(e)
		w.counters.drop(e.cat, e.points, dropSpillCorrupt)
		w.counters.lastErr.set(err)
		w.log.Error("io: spilled batch unreadable, dropped", "err", err, "points", e.points)
		return true
	}
	err = w.sendOnce(b)
	if err == nil || isPermanent(err) {
		w.spill.complete(e)
		w.probe.reset()
		w.noteRecovered()
		return true
	}
	w.spill.release()
	if w.stopping() {
		return false
	}
	w.counters.retries.Add(1)
	return w.sleep(w.retryDelay(&w.probe, err))
}

func (w *outputWorker) noteRecovered() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.spilling && w.spill.empty() {
		w.spilling = false
		w.log.Info("io: output recovered, spill drained")
	}
}

// sendOnce makes one attempt and counts its outcome.
func (w *outputWorker) sendOnce(b *batch) error {
	n, err := w.sender.send(w.ctx, b)
	if err == nil {
		w.counters.perCategory[categoryIndex(b.cat)].sent.Add(int64(b.points))
		w.counters.bytesSent.Add(int64(n))
		w.counters.batchesSent.Add(1)
		return nil
	}
	w.counters.lastErr.set(err)
	if isPermanent(err) {
		w.counters.permanentErrors.Add(1)
		w.counters.drop(b.cat, b.points, dropPermanent)
		if ok, n := w.permLog.allow(); ok {
			w.log.Error("io: output rejected a batch permanently, dropped",
				"err", err, "points", b.points, "category", b.cat.String(), "suppressed", n)
		}
	}
	return err
}

// retryDelay is the backoff's next delay, or the server's Retry-After when it sent one.
// Retry-After is capped at retry_max, so one header cannot park the output for hours.
func (w *outputWorker) retryDelay(bo *backoff, err error) time.Duration {
	d := bo.next()
	if ra := retryAfterOf(err); ra > 0 {
		d = min(ra, w.cfg.RetryMax)
	}
	return d
}

// sleep waits d; false when stopping cut it short.
func (w *outputWorker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.draining:
		return false
	case <-w.ctx.Done():
		return false
	}
}

// memoryLen is the number of batches waiting in memory.
func (w *outputWorker) memoryLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.memory)
}

// backoff is exponential with "equal jitter": half the delay is fixed, half random, so
// outputs that failed together do not retry in lockstep and no delay collapses to zero.
type backoff struct {
	initial, max time.Duration
	attempt      int
}

func (b *backoff) next() time.Duration {
	d := b.initial
	for i := 0; i < b.attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.attempt++
	half := d / 2
	return half + rand.N(d-half+1)
}

func (b *backoff) reset() { b.attempt = 0 }
