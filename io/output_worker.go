package io

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apmkit/apmkit/point"
)

// outputWorker owns one output: a bounded in-memory queue of batches, a disk spill, up to
// max_in_flight sender goroutines and a spill writer, so one slow or failing output never
// blocks another output or the intake.
//
// Scheduling. Every batch gets the next output sequence number when it is queued; its spill
// file is named by it, so the spill keeps the batches in the order they were queued however
// they get there:
//   - the spill writer moves the OLDEST memory batches to the disk only when the memory queue
//     is over its bounds (queue_max_batches, a quarter of queue_max_mb): the output does not
//     keep up, or it fails. The intake never waits for the disk;
//   - a batch a sender could not deliver (retry_max_elapsed, configuration error, stop) is
//     spilled under its own number, among the older batches.
//
// While the output works (its last attempt was delivered), senders take the memory queue
// first, oldest first, and the senders with nothing in memory deliver the spill, oldest
// first, each its own batch: up to max_in_flight spill requests at once. New batches are not
// held behind the spill, so nothing new is spilled while the output keeps up, and the spill
// drains with the capacity the input leaves. While the output fails (its last attempt
// failed) and the spill holds batches, one sender at a time tries the spill's oldest batch
// (the probe, with backoff) and the memory queue overflows to the disk; the first success
// puts every sender back to work.
//
// Order. Within the memory queue and within the spill, batches are sent oldest first; but a
// memory batch goes before older spilled ones, and batches sent at once (max_in_flight) may
// arrive in any order, a retried one after later ones. With one request at a time (file
// outputs, max_in_flight 1) delivery is in feed order, the spill first. Order across
// batches does not change what the database holds: a point is its series and timestamp,
// written again it overwrites itself.
// What is guaranteed: each batch is delivered once, apart from a request cut off by the stop
// deadline after the server got it; after kill -9, spilled batches at least once (a spill
// file's progress is recorded on disk only at a graceful stop).
type outputWorker struct {
	name        string
	typ         string
	cfg         OutputConfig
	sender      sender
	spill       *spillQueue
	counters    *outputCounters
	drops       *dropLog // every loss of this output, one line a minute per reason
	log         *slog.Logger
	failLog     logLimiter // failed attempts (network, 5xx...): the first one at once
	configLog   logLimiter // configuration errors (401, 403, database not found...)
	maxMemBytes int64
	// failureLogged: a failure was logged since the last delivery, so the recovery is too.
	failureLogged atomic.Bool
	prepareOnce   sync.Once

	mu        sync.Mutex
	changed   *sync.Cond // any state below changed
	memory    []queuedBatch
	memBytes  int64
	nextSeq   uint64
	writing   int  // batches the spill writer took from memory and is writing
	fresh     int  // memory batches being sent
	draining  int  // senders delivering a spilled batch (or waiting to retry one)
	gaveUp    bool // stopping and a spilled batch failed: the spill waits for the next run
	stopping  bool // Stop: deliver what is left, then exit
	aborted   bool // the stop deadline passed: abort, spill what is left
	finishing bool // the spill writer writes all of memory and exits
	exited    bool // everything has stopped: a late batch goes to the spill at once
	outage    bool // for one log line per outage, not one per batch
	// A slow output can spill and catch up every few seconds: the outage lines are also
	// limited to one pair a minute.
	outageLog    logLimiter
	outageLogged bool // the current outage was logged: so is its end

	stopCh     chan struct{} // closed by beginStop: cuts retry sleeps short
	ctx        context.Context
	cancel     context.CancelFunc // the stop deadline: abort requests and sleeps
	senders    sync.WaitGroup
	writerDone chan struct{}

	probe backoff // delays between failed attempts on spilled batches, under mu
}

// queuedBatch is a batch in one output's FIFO.
type queuedBatch struct {
	b    *batch
	seq  uint64 // output sequence: the spill file's order
	size int64
}

// newOutputWorker: log is the output's logger (with its name), drops the log of its losses
// (shared with its spill).
func newOutputWorker(cfg OutputConfig, s sender, spill *spillQueue, counters *outputCounters, drops *dropLog, maxMemBytes int64, log *slog.Logger) *outputWorker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &outputWorker{
		name:        cfg.Name,
		typ:         cfg.Type,
		cfg:         cfg,
		sender:      s,
		spill:       spill,
		counters:    counters,
		drops:       drops,
		log:         log,
		failLog:     logLimiter{every: time.Minute},
		configLog:   logLimiter{every: time.Minute},
		outageLog:   logLimiter{every: time.Minute},
		maxMemBytes: max(maxMemBytes, 1),
		stopCh:      make(chan struct{}),
		ctx:         ctx,
		cancel:      cancel,
		writerDone:  make(chan struct{}),
		probe:       backoff{initial: cfg.RetryInitial, max: cfg.RetryMax},
	}
	w.changed = sync.NewCond(&w.mu)
	return w
}

// start launches the senders and the spill writer.
func (w *outputWorker) start() {
	// The stop deadline must wake goroutines waiting on the condition, not only those in a
	// request or a sleep.
	context.AfterFunc(w.ctx, w.broadcast)
	for range w.cfg.inFlight() {
		w.senders.Go(w.runSender)
	}
	go func() {
		defer close(w.writerDone)
		w.runSpillWriter()
	}()
}

func (w *outputWorker) broadcast() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changed.Broadcast()
}

// enqueue takes a batch without waiting: at the memory tail, where a sender or the spill
// writer picks it up. It runs under the intake's lock, so it only appends and signals.
func (w *outputWorker) enqueue(b *batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := queuedBatch{b: b, seq: w.nextSeq, size: b.size()}
	w.nextSeq++
	if w.exited { // only if a batch arrives after Stop: nothing would send it
		w.writeSpill([]queuedBatch{q})
		return
	}
	w.memory = append(w.memory, q)
	w.memBytes += q.size
	w.changed.Broadcast()
}

// job is what a sender does next: a memory batch, or a spilled one.
type job struct {
	q         queuedBatch
	e         spillEntry
	fromSpill bool
}

// nextJob waits for work (see outputWorker: memory first, then the spill; while the output
// fails, one probe of the spill); false means the sender should exit.
func (w *outputWorker) nextJob() (job, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if w.aborted {
			return job{}, false
		}
		spilled := w.writing > 0 || !w.spill.empty()
		switch {
		case spilled && w.failingLocked():
			if w.stopping && w.gaveUp {
				return job{}, false
			}
			if w.draining == 0 {
				if e, ok := w.spill.peek(); ok {
					w.draining++
					return job{e: e, fromSpill: true}, true
				}
			}
		case len(w.memory) > 0 && !(spilled && w.cfg.inFlight() == 1):
			// With one request at a time (files, max_in_flight 1) delivery stays in feed
			// order: the spill, older than memory, goes first (below).
			return job{q: w.popLocked()}, true
		case w.stopping && w.gaveUp:
			return job{}, false
		default:
			if e, ok := w.spill.peek(); ok {
				w.draining++
				return job{e: e, fromSpill: true}, true
			}
			// Stopping, a sender exits once nothing is left to take. Batches the spill
			// writer is writing will be there to deliver: wait for them. A spilled batch
			// another sender is delivering comes back only if it fails, which ends the
			// stop's delivery of the spill anyway (gaveUp).
			if w.stopping && w.writing == 0 {
				return job{}, false
			}
		}
		w.changed.Wait()
	}
}

// failingLocked: the output's last attempt failed (retryable or configuration error).
func (w *outputWorker) failingLocked() bool {
	return outputHealth(w.counters.health.Load()) != healthOK
}

func (w *outputWorker) popLocked() queuedBatch {
	q := w.memory[0]
	w.memory[0] = queuedBatch{}
	w.memory = w.memory[1:]
	w.memBytes -= q.size
	w.fresh++
	return q
}

func (w *outputWorker) runSender() {
	// The first sender sets the output up; the others wait for it (sync.Once).
	w.prepareOnce.Do(w.prepare)
	for {
		j, ok := w.nextJob()
		if !ok {
			return
		}
		if j.fromSpill {
			more := w.deliverSpilled(j.e)
			w.mu.Lock()
			w.draining--
			w.gaveUp = w.gaveUp || !more
			w.changed.Broadcast()
			w.mu.Unlock()
			continue
		}
		delivered := w.deliverFresh(j.q)
		w.mu.Lock()
		w.fresh--
		if delivered {
			w.probe.reset() // the next outage's probes start from retry_initial again
		}
		w.changed.Broadcast()
		w.mu.Unlock()
	}
}

// beginStop asks the senders to deliver what is left (memory, then the spill while the
// output accepts it) and exit.
func (w *outputWorker) beginStop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopping = true
	close(w.stopCh)
	w.changed.Broadcast()
}

func (w *outputWorker) waitSenders() { w.senders.Wait() }

// abort is the stop deadline: requests in flight are cancelled and their batches spilled.
func (w *outputWorker) abort() {
	w.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.aborted = true
	w.changed.Broadcast()
}

// finish spills what the senders left in memory and waits for the spill writer. After it,
// the output holds nothing in memory.
func (w *outputWorker) finish() {
	w.mu.Lock()
	w.finishing = true
	w.changed.Broadcast()
	w.mu.Unlock()
	<-w.writerDone
	w.mu.Lock()
	defer w.mu.Unlock()
	w.exited = true
}

func (w *outputWorker) stoppingNow() bool {
	select {
	case <-w.stopCh:
		return true
	case <-w.ctx.Done():
		return true
	default:
		return false
	}
}

// deliverFresh sends a memory batch, retrying with backoff up to retry_max_elapsed; then
// (or when stopping, or at once on a configuration error, which retrying soon will not fix)
// what is left of it goes to the spill under its own sequence number. It reports whether
// the batch was delivered (or refused for good).
func (w *outputWorker) deliverFresh(q queuedBatch) bool {
	start := time.Now()
	bo := backoff{initial: w.cfg.RetryInitial, max: w.cfg.RetryMax}
	d := &delivery{b: q.b}
	for {
		err := w.attempt(d)
		if err == nil {
			q.b.release()
			return true
		}
		if classOf(err) == classConfig {
			w.spillRest(q, d, "configuration error: see the ERROR line")
			return false
		}
		// While stopping, a failing output is not retried: its batches go straight to the
		// spill, so a dead output cannot hold shutdown for the whole stop_timeout.
		if w.ctx.Err() != nil {
			w.spillRest(q, d, "stop_timeout reached: the request was cut short")
			return false
		}
		if w.stoppingNow() {
			w.spillRest(q, d, "stopping while the output fails")
			return false
		}
		wait := w.retryDelay(&bo, err)
		if time.Since(start)+wait > w.cfg.RetryMaxElapsed {
			w.spillRest(q, d, "retry_max_elapsed reached")
			return false
		}
		w.counters.retries.Add(1)
		if !w.sleep(wait) {
			w.spillRest(q, d, "stopping while the output fails")
			return false
		}
	}
}

// spillRest spills what the delivery has left, under the batch's sequence number.
func (w *outputWorker) spillRest(q queuedBatch, d *delivery, why string) {
	q.b = d.remaining()
	w.spillFailed(q, why)
}

func (w *outputWorker) spillFailed(q queuedBatch, why string) {
	w.mu.Lock()
	w.noteOutageLocked(why)
	w.mu.Unlock()
	w.writeSpill([]queuedBatch{q})
}

// deliverSpilled makes one attempt with a spilled batch, which doubles as the probe of a
// failed output; after a failure it waits the probe delay. It reports false when the sender
// should exit (stopping).
func (w *outputWorker) deliverSpilled(e spillEntry) bool {
	d, err := w.spillDelivery(e)
	if err != nil {
		w.counters.lastErr.set(err)
		w.spill.dropCorrupt(e, err) // counted and logged through the spill's onDrop
		return true
	}
	err = w.attempt(d)
	if err == nil {
		w.spill.complete(e)
		w.mu.Lock()
		w.probe.reset()
		w.mu.Unlock()
		w.noteRecovered()
		return true
	}
	if !d.split {
		d = nil
	}
	w.spill.release(e, d)
	if w.stoppingNow() {
		return false
	}
	w.counters.retries.Add(1)
	w.mu.Lock()
	wait := w.retryDelay(&w.probe, err)
	w.mu.Unlock()
	return w.sleep(wait)
}

// spillDelivery goes on with the pieces left by the last attempt at this batch, or loads
// it. A stop forgets the pieces: the next run sends the whole batch again, which is
// harmless (see delivery).
func (w *outputWorker) spillDelivery(e spillEntry) (*delivery, error) {
	if d := w.spill.resumed(e); d != nil {
		return d, nil
	}
	b, err := w.spill.load(e)
	if err != nil {
		return nil, err
	}
	return &delivery{b: b}, nil
}

func (w *outputWorker) noteRecovered() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.outage && w.spill.empty() && w.writing == 0 {
		w.outage = false
		if w.outageLogged {
			w.outageLogged = false
			w.log.Info("io: output caught up, spill drained")
		}
	}
}

// noteOutageLocked logs the start of an outage once, and outages at most once a minute: why
// batches go to the spill and, if the output fails, its state and last error.
func (w *outputWorker) noteOutageLocked(why string) {
	if w.outage || w.exited {
		return
	}
	w.outage = true
	ok, suppressed := w.outageLog.allow()
	if !ok {
		return
	}
	w.outageLogged = true
	attrs := []any{"reason", why}
	if h := outputHealth(w.counters.health.Load()); h != healthOK {
		text, _ := w.counters.lastErr.get()
		attrs = append(attrs, "state", h.String(), "last_error", text)
	}
	attrs = append(attrs, "earlier_outages_not_logged", suppressed)
	w.log.Warn("io: output behind or failing; spilling batches to disk until it catches up", attrs...)
}

// behindReasonLocked says why the memory queue is over its bounds: the output fails, or it
// merely sends slower than the input feeds it.
func (w *outputWorker) behindReasonLocked() string {
	if w.failingLocked() {
		return fmt.Sprintf("the output fails: %d batches waiting in memory", len(w.memory))
	}
	return fmt.Sprintf("output slower than the input: %d batches waiting in memory, %d requests in flight (max_in_flight %d)",
		len(w.memory), w.fresh+w.draining, w.cfg.inFlight())
}

// drop counts and logs points this output lost.
func (w *outputWorker) drop(cat point.Category, points int, reason dropReason, err error) {
	w.counters.drop(cat, points, reason)
	w.drops.note(cat, points, reason, err)
}

// sendOnce makes one attempt and counts its outcome; dropping refused lines is the
// caller's (see attempt).
func (w *outputWorker) sendOnce(b *batch) error {
	res, err := w.sender.send(w.ctx, b)
	if err != nil {
		w.noteFailure(err)
		return err
	}
	for _, l := range res.lost {
		w.drop(b.cat, l.points, l.reason, l.err)
	}
	w.counters.perCategory[categoryIndex(b.cat)].sent.Add(int64(max(b.points-res.lostPoints(), 0)))
	w.counters.bytesSent.Add(int64(res.bytes))
	w.counters.batchesSent.Add(1)
	w.noteDelivered()
	return nil
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
	case <-w.stopCh:
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
