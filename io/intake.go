package io

import (
	"context"
	"sync"
	"time"

	"github.com/apmkit/apmkit/point"
)

// intake is one category's open batch. Feed encodes points in the caller's goroutine (the
// gRPC handlers, so encoding runs on every core) and appends the finished lines here under
// a short lock; the batch is cut at batch_max_points, batch_max_bytes, or flush_interval
// after its first line, and handed to the outputs of the category at once. Nothing here
// waits on an output or the disk.
//
// Cutting and handing over happen under mu, so batches reach every output in the order
// they were cut.
type intake struct {
	cat       point.Category
	counters  *categoryCounters
	budget    *byteBudget
	codec     *gzipCodec
	pool      *bufferPool
	maxPoints int
	maxBytes  int
	interval  time.Duration
	outputs   []*outputWorker

	mu       sync.Mutex
	open     *batch // nil when no line waits
	openedAt time.Time
	lastSize int // the previous batch's size: the next one's initial capacity
	closed   bool
	timer    *time.Timer // flush_interval of the open batch
}

func newIntake(cat point.Category, counters *categoryCounters, budget *byteBudget, codec *gzipCodec, pool *bufferPool, cfg Config, outputs []*outputWorker) *intake {
	in := &intake{
		cat: cat, counters: counters, budget: budget, codec: codec, pool: pool,
		maxPoints: cfg.BatchMaxPoints, maxBytes: cfg.BatchMaxBytes, interval: cfg.FlushInterval,
		outputs: outputs,
	}
	// One timer per category, re-armed for each batch; AfterFunc needs no goroutine of our
	// own, so there is nothing to stop but the timer.
	in.timer = time.AfterFunc(time.Hour, in.flushDue)
	in.timer.Stop()
	return in
}

// lines is a run of encoded lines: buf holds them back to back, ends[i] is where line i ends.
type lines struct {
	buf  []byte
	ends []int
}

func (l *lines) reset() {
	l.buf, l.ends = l.buf[:0], l.ends[:0]
}

// span returns the bytes of lines [from, to).
func (l *lines) span(from, to int) []byte {
	start := 0
	if from > 0 {
		start = l.ends[from-1]
	}
	return l.buf[start:l.ends[to-1]]
}

// commit acquires budget for the lines (waiting in line while it is spent, up to the
// deadline or ctx) and appends them.
func (in *intake) commit(ctx context.Context, l *lines, deadline func() <-chan time.Time) error {
	if len(l.ends) == 0 {
		return nil
	}
	n := int64(len(l.buf))
	if err := in.budget.acquire(ctx, n, deadline); err != nil {
		return err
	}
	if err := in.append(l, 0, len(l.ends)); err != nil {
		in.budget.release(n)
		return err
	}
	return nil
}

// append adds lines [from, to) to the open batch, cutting batches as they fill.
func (in *intake) append(l *lines, from, to int) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return errBudgetClosed
	}
	for from < to {
		if in.open == nil {
			in.openBatch()
		}
		k := in.fit(l, from, to)
		if k == 0 {
			in.cutLocked()
			continue
		}
		in.open.raw = append(in.open.raw, l.span(from, from+k)...)
		in.open.points += k
		in.counters.queued.Add(int64(k))
		in.counters.batched.Add(int64(k))
		from += k
		if in.open.points >= in.maxPoints || len(in.open.raw) >= in.maxBytes {
			in.cutLocked()
		}
	}
	return nil
}

// fit counts the lines from `from` that fit in the open batch; a line longer than
// batch_max_bytes fits an empty batch, so it is sent alone.
func (in *intake) fit(l *lines, from, to int) int {
	room := in.maxBytes - len(in.open.raw)
	k := 0
	for from+k < to && in.open.points+k < in.maxPoints {
		if len(l.span(from, from+k+1)) > room && (k > 0 || in.open.points > 0) {
			break
		}
		k++
	}
	return k
}

func (in *intake) openBatch() {
	capacity := min(in.maxBytes, max(in.lastSize+in.lastSize/8, 4<<10))
	in.open = &batch{
		cat: in.cat, codec: in.codec, budget: in.budget, pool: in.pool, queued: &in.counters.queued,
		raw: in.pool.get(capacity),
	}
	in.openedAt = time.Now()
	in.timer.Reset(in.interval)
}

// cutLocked hands the open batch to every output of the category.
func (in *intake) cutLocked() {
	b := in.open
	if b == nil {
		return
	}
	in.open = nil
	in.timer.Stop()
	in.lastSize = len(b.raw)
	b.held = int64(len(b.raw)) // what commit reserved for its lines
	b.refs.Store(int32(len(in.outputs)))
	in.counters.batches.Add(1)
	for _, w := range in.outputs {
		w.enqueue(b)
	}
}

// flushDue is the timer: it cuts the open batch once its first line is flush_interval old.
// A timer that fired for an earlier batch re-arms for the current one.
func (in *intake) flushDue() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.open == nil || in.closed {
		return
	}
	if age := time.Since(in.openedAt); age < in.interval {
		in.timer.Reset(in.interval - age)
		return
	}
	in.cutLocked()
}

// close cuts the open batch and refuses further lines: the uploader is stopping.
func (in *intake) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	in.timer.Stop()
	in.cutLocked()
}
