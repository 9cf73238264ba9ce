package io

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// outputWorker owns one output: a bounded in-memory queue of batches, a disk spill, up to
// max_in_flight sender goroutines and a spill writer, so one slow or failing output never
// blocks another output or the intake.
//
// Ordering: the output's batches form one FIFO whose older part may be on disk (the spill)
// and whose newer part is in memory. Every batch gets the next output sequence number when
// it is queued, and its spill file is named by it, so the disk keeps FIFO order however a
// batch gets there:
//   - the spill writer moves the OLDEST memory batches to the disk when the memory queue
//     is over its bounds (queue_max_batches, a quarter of queue_max_mb): memory stays newer
//     than disk, and the intake never waits for the disk;
//   - a batch a sender could not deliver (retry_max_elapsed, stop) is spilled under its own
//     number, ahead of the newer batches already there.
//
// Senders take memory batches only while the spill is empty and nothing is being written
// to it; otherwise one sender at a time delivers the spill's oldest batch, and only when no
// memory batch is in flight, so the spill drains strictly in order. With max_in_flight 1
// delivery is in feed order; with more, batches sent at the same time may arrive out of
// order (one that is retried arrives after later ones), the spill drain stays in order.
// Apart from a request cut off by the stop deadline after the server got it, each batch is
// delivered once.
type outputWorker struct {
	name        string
	typ         string
	cfg         OutputConfig
	sender      sender
	spill       *spillQueue
	counters    *outputCounters
	log         *slog.Logger
	permLog     logLimiter // permanent errors: at most one log line a minute
	refusedLog  logLimiter // lines refused as malformed or too large
	failLog     logLimiter // failed attempts (network, 5xx...): the first one at once
	configLog   logLimiter // configuration errors (401, 403, database not found...)
	spillLog    logLimiter // spill write failures
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
	draining  bool // a sender is delivering the spill's oldest batch
	gaveUp    bool // stopping and the spill's oldest batch failed: the spill waits for the next run
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

	probe backoff // delays between attempts on the spill's oldest batch (one drainer at a time)
	// resume is the spill's oldest batch, split after a malformed answer, with the pieces
	// not yet delivered when the output then failed: the next attempt goes on from there
	// instead of sending the delivered pieces again. Only the drainer (one at a time) uses it.
	resume *resumable
}

// resumable is a split spill batch being delivered.
type resumable struct {
	at spillEntry
	d  *delivery
}

// queuedBatch is a batch in one output's FIFO.
type queuedBatch struct {
	b    *batch
	seq  uint64 // output sequence: the spill file's order
	size int64
}

func newOutputWorker(cfg OutputConfig, s sender, spill *spillQueue, counters *outputCounters, maxMemBytes int64, log *slog.Logger) *outputWorker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &outputWorker{
		name:        cfg.Name,
		typ:         cfg.Type,
		cfg:         cfg,
		sender:      s,
		spill:       spill,
		counters:    counters,
		log:         log.With("output", cfg.Name),
		permLog:     logLimiter{every: time.Minute},
		refusedLog:  logLimiter{every: time.Minute},
		failLog:     logLimiter{every: time.Minute},
		configLog:   logLimiter{every: time.Minute},
		spillLog:    logLimiter{every: time.Minute},
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

// job is what a sender does next: a memory batch, or the spill's oldest batch.
type job struct {
	q         queuedBatch
	fromSpill bool
}

// nextJob waits for work; false means the sender should exit.
func (w *outputWorker) nextJob() (job, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if w.aborted {
			return job{}, false
		}
		if w.writing > 0 || !w.spill.empty() {
			if w.stopping && w.gaveUp {
				return job{}, false
			}
			// Batches the spill writer is writing are newer than those on disk: the
			// oldest may go while it writes. Fresh batches in flight are older, and may
			// still land in the spill: the drain waits for them.
			if !w.draining && w.fresh == 0 && !w.spill.empty() {
				w.draining = true
				return job{fromSpill: true}, true
			}
		} else if len(w.memory) > 0 {
			return job{q: w.popLocked()}, true
		} else if w.stopping {
			return job{}, false
		}
		w.changed.Wait()
	}
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
			more := w.deliverSpilled()
			w.mu.Lock()
			w.draining = false
			w.gaveUp = w.gaveUp || !more
			w.changed.Broadcast()
			w.mu.Unlock()
			continue
		}
		w.deliverFresh(j.q)
		w.mu.Lock()
		w.fresh--
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
// what is left of it goes to the spill under its own sequence number.
func (w *outputWorker) deliverFresh(q queuedBatch) {
	start := time.Now()
	bo := backoff{initial: w.cfg.RetryInitial, max: w.cfg.RetryMax}
	d := &delivery{b: q.b}
	for {
		err := w.attempt(d)
		if err == nil {
			q.b.release()
			return
		}
		if classOf(err) == classConfig {
			w.spillRest(q, d, "configuration error: see the ERROR line")
			return
		}
		// While stopping, a failing output is not retried: its batches go straight to the
		// spill, so a dead output cannot hold shutdown for the whole stop_timeout.
		if w.stoppingNow() {
			w.spillRest(q, d, "stopping while the output fails")
			return
		}
		wait := w.retryDelay(&bo, err)
		if time.Since(start)+wait > w.cfg.RetryMaxElapsed {
			w.spillRest(q, d, "retry_max_elapsed reached")
			return
		}
		w.counters.retries.Add(1)
		if !w.sleep(wait) {
			w.spillRest(q, d, "stopping while the output fails")
			return
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

// deliverSpilled makes one attempt with the spill's oldest batch, which doubles as the
// probe of a failed output; it reports false when the sender should exit (stopping).
func (w *outputWorker) deliverSpilled() bool {
	e, ok := w.spill.peek()
	if !ok {
		return true
	}
	d, err := w.spillDelivery(e)
	if err != nil {
		points := w.spill.dropCorrupt(e)
		w.counters.drop(e.cat, points, dropSpillCorrupt)
		w.counters.lastErr.set(err)
		w.log.Error("io: spilled batches unreadable, dropped", "err", err, "points", points)
		return true
	}
	err = w.attempt(d)
	w.resume = nil
	if err == nil {
		w.spill.complete(e)
		w.probe.reset()
		w.noteRecovered()
		return true
	}
	if d.split {
		w.resume = &resumable{at: e, d: d}
	}
	w.spill.release()
	if w.stoppingNow() {
		return false
	}
	w.counters.retries.Add(1)
	return w.sleep(w.retryDelay(&w.probe, err))
}

// spillDelivery goes on with the pieces left by the last attempt at this batch, or loads
// it. A stop forgets the pieces: the next run sends the whole batch again, which is
// harmless (see delivery).
func (w *outputWorker) spillDelivery(e spillEntry) (*delivery, error) {
	if r := w.resume; r != nil && r.at == e {
		return r.d, nil
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

// noteOutageLocked logs the start of an outage once, and outages at most once a minute.
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
	text, _ := w.counters.lastErr.get()
	w.log.Warn("io: output behind or failing; spilling batches to disk until it catches up",
		"reason", why, "last_error", text, "earlier_outages_not_logged", suppressed)
}

// sendOnce makes one attempt and counts its outcome; dropping refused lines is the
// caller's (see attempt).
func (w *outputWorker) sendOnce(b *batch) error {
	n, err := w.sender.send(w.ctx, b)
	if err != nil {
		w.noteFailure(err)
		return err
	}
	w.counters.perCategory[categoryIndex(b.cat)].sent.Add(int64(b.points))
	w.counters.bytesSent.Add(int64(n))
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
