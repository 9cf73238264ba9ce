package trace

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// ErrStopped is returned by ConsumeSpan and ConsumeChunk after Stop.
var ErrStopped = errors.New("trace: assembler stopped")

// ErrNoTransactionID refuses a span or chunk without a transaction id: it cannot be put
// into any trace.
var ErrNoTransactionID = errors.New("trace: span without transactionId")

// numStripes is the number of locks spans are spread over by key: a span's chunk and the
// span itself must not be merged and parked at the same moment, while unrelated spans
// must not wait for each other.
const numStripes = 64

// Assembler rebuilds Pinpoint spans from PSpans and PSpanChunks and emits them as points.
// It implements the input's SpanConsumer. Call Start before the first Consume call and
// Stop at the end.
type Assembler struct {
	opts      Options
	names     annotationNames
	c         counters
	pending   *pendingIndex
	held      *holdQueue
	skeletons *skeletons
	shared    cache.Shared // Options.Store when replicas share it (shared.go), else nil
	seed      maphash.Seed
	stripes   [numStripes]sync.Mutex
	// convPool recycles converters (resolver memo and scratch), not points.
	convPool sync.Pool

	// gate lets Stop wait for calls in flight: Consume calls hold it shared.
	gate    sync.RWMutex
	stopped bool
	started bool

	wake     chan struct{}
	quit     chan struct{}
	loopDone chan struct{}
	lastLog  atomic.Int64 // unix ns of the last background error logged
}

// New returns an assembler; it starts nothing.
func New(opts Options) (*Assembler, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Assembler{
		opts:      opts,
		names:     newAnnotationNames(opts.Types),
		pending:   newPendingIndex(opts.MaxPendingSpans, opts.MaxPendingBytes),
		held:      newHoldQueue(opts.MaxHeldSpans, opts.MaxHeldBytes),
		skeletons: newSkeletons(opts.MaxSkeletonBytes, 2*opts.ChunkWait),
		seed:      maphash.MakeSeed(),
		wake:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		loopDone:  make(chan struct{}),
	}
	a.shared, _ = opts.Store.(cache.Shared)
	if err := a.c.register(opts.Metrics, a.Stats); err != nil {
		return nil, err
	}
	return a, nil
}

// Start finds the chunks a previous run left pending in the store, schedules their
// expiry, puts the spans it left waiting for metadata back on hold for a fresh
// MetadataWait, and starts the background work (metadata wake-ups, waits running out).
// Chunks found already past their deadline are emitted at the first tick; restored spans
// whose metadata is known already at once.
func (a *Assembler) Start() error {
	a.gate.Lock()
	defer a.gate.Unlock()
	if a.started || a.stopped {
		return errors.New("trace: Start called twice or after Stop")
	}
	if err := a.restoreSkeletons(); err != nil {
		return err
	}
	evict, err := a.restorePending()
	if err != nil {
		return err
	}
	overflow, err := a.restoreHeld()
	if err != nil {
		return err
	}
	if n := a.c.restoredHeld.Load(); n > 0 {
		a.opts.Logger.Info("pinpoint trace: spans that waited for metadata at the last stop wait again",
			"spans", n, "metadata_wait", a.opts.MetadataWait)
		a.wakeUp()
	}
	a.started = true
	go a.loop(evict, overflow)
	return nil
}

// restorePending indexes the chunk records in the store.
func (a *Assembler) restorePending() ([]string, error) {
	var evict []string
	err := a.opts.Store.Scan([]byte{prefixPending}, func(key, val []byte) error {
		id, ok := spanIDOfPendingKey(key)
		if !ok {
			return nil
		}
		agent, ok := agentOfSpanID(id)
		if !ok {
			return nil
		}
		deadline, _, _, err := decodePendingHeader(val, agent)
		if err != nil {
			a.c.storeErrors.Add(1)
			return nil
		}
		evict = append(evict, a.pending.add(id, deadline, int64(len(key)+len(val)))...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("trace: restore pending chunks: %w", err)
	}
	return evict, nil
}

// Stop ends the background work, emits the spans held for metadata whose names are known
// now and writes the others to the store for the next Start (a store that refuses one
// makes it go out with placeholders instead), writes the span skeletons to the store, and
// leaves pending chunks there for the next Start. It waits for Consume calls in flight
// and is idempotent.
func (a *Assembler) Stop(ctx context.Context) error {
	a.gate.Lock()
	if a.stopped {
		a.gate.Unlock()
		return nil
	}
	a.stopped = true
	started := a.started
	a.gate.Unlock()
	if started {
		// The loop's context ends with quit, so an emit in progress returns at once.
		close(a.quit)
		<-a.loopDone
	}
	var errs []error
	kept := 0
	for _, u := range a.held.drain() {
		// Metadata that arrived after the background work's last look releases its spans
		// now; the others wait in the store for metadata the next run may receive.
		if !resolvable(a.opts.Meta, u.sender.AgentKey, u.missing) && a.keepHeld(u) {
			kept++
			continue
		}
		errs = append(errs, a.emitFinal(ctx, u))
	}
	if kept > 0 {
		a.opts.Logger.Info("pinpoint trace: spans still waiting for metadata are kept for the next start", "spans", kept)
	}
	a.pending.reset()
	errs = append(errs, a.persistSkeletons(ctx))
	return errors.Join(errs...)
}

// enter admits a Consume call unless the assembler is stopped.
func (a *Assembler) enter() bool {
	a.gate.RLock()
	if a.stopped {
		a.gate.RUnlock()
		return false
	}
	return true
}

func (a *Assembler) leave() { a.gate.RUnlock() }

// ConsumeSpan takes one PSpan of sender: merges the chunks that waited for it, emits the
// entry span and its events (or holds them briefly for metadata).
func (a *Assembler) ConsumeSpan(ctx context.Context, s *meta.Sender, span *pb.PSpan) error {
	if !a.enter() {
		return ErrStopped
	}
	defer a.leave()
	if span.GetTransactionId() == nil {
		a.c.invalid.Add(1)
		return ErrNoTransactionID
	}
	a.c.spans.Add(1)
	key := newSpanKey(s, span.GetTransactionId(), span.GetSpanId())
	u, evict := a.settle(settleRequest{key: key, sender: *s, span: span})
	err := a.release(ctx, u)
	return errors.Join(err, a.evict(ctx, evict, true))
}

// ConsumeChunk takes one PSpanChunk of sender. Async work is emitted at once; a sync chunk
// waits in the store for its span, or is linked to the span emitted before it.
func (a *Assembler) ConsumeChunk(ctx context.Context, s *meta.Sender, chunk *pb.PSpanChunk) error {
	if !a.enter() {
		return ErrStopped
	}
	defer a.leave()
	if chunk.GetTransactionId() == nil {
		a.c.invalid.Add(1)
		return ErrNoTransactionID
	}
	a.c.chunks.Add(1)
	key := newSpanKey(s, chunk.GetTransactionId(), chunk.GetSpanId())
	if la := chunk.GetLocalAsyncId(); la != nil {
		a.c.asyncChunks.Add(1)
		key.asyncID, key.asyncSeq = la.GetAsyncId(), la.GetSequence()
		return a.release(ctx, a.asyncUnit(key, s, chunk))
	}
	if len(chunk.GetSpanEvent()) == 0 {
		return nil // nothing to place or emit
	}
	u, evict := a.settle(settleRequest{key: key, sender: *s, chunk: chunk})
	err := a.release(ctx, u)
	return errors.Join(err, a.evict(ctx, evict, true))
}

// MetadataArrived tells the assembler that new metadata of an agent run was stored, so
// spans held for it can be emitted. It never blocks; wire it to meta.Options.OnPut.
func (a *Assembler) MetadataArrived(agent meta.AgentKey) {
	a.held.markDirty(agent)
	a.wakeUp()
}

func (a *Assembler) wakeUp() {
	select {
	case a.wake <- struct{}{}:
	default: // a wake-up is already due; it will see this agent too
	}
}

// Stats returns a snapshot of the counters and gauges.
func (a *Assembler) Stats() Stats {
	s := a.c.snapshot()
	s.Held, s.HeldBytes = a.held.size()
	s.PendingSpans, s.PendingBytes = a.pending.size()
	s.Skeletons, s.SkeletonBytes = a.skeletons.size()
	return s
}

// tick is how often the background work checks for waits that ran out: often enough
// that MetadataWait is kept within a quarter of itself, rarely enough to cost nothing.
func (a *Assembler) tick() time.Duration {
	t := time.Second
	if w := a.opts.MetadataWait / 4; w > 0 && w < t {
		t = w
	}
	return max(t, 10*time.Millisecond)
}

func (a *Assembler) loop(evict []string, overflow []*unit) {
	defer close(a.loopDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-a.quit
		cancel()
	}()
	a.logBackground(a.evict(ctx, evict, true))
	for _, u := range overflow {
		a.logBackground(a.emitFinal(ctx, u))
	}
	ticker := time.NewTicker(a.tick())
	defer ticker.Stop()
	for {
		select {
		case <-a.quit:
			return
		case <-a.wake:
		case <-ticker.C:
		}
		a.logBackground(a.processDue(ctx))
	}
}

// processDue does the background work once, as of Options.Now: emits held spans whose
// metadata arrived or whose wait ran out, and chunks whose ChunkWait ran out.
func (a *Assembler) processDue(ctx context.Context) error {
	now := a.opts.Now().UnixMilli()
	var errs []error
	for _, u := range a.held.ready(a.opts.Meta, now) {
		errs = append(errs, a.emitFinal(ctx, u))
	}
	errs = append(errs, a.evict(ctx, a.pending.due(now), false))
	return errors.Join(errs...)
}

// evict emits the chunks of spans taken out of the pending index, because a cap was hit
// (overflow) or their ChunkWait ran out, linked as well as what is known allows.
func (a *Assembler) evict(ctx context.Context, ids []string, overflow bool) error {
	if overflow {
		a.c.pendingOverflow.Add(uint64(len(ids)))
	}
	var errs []error
	for i := 0; i < len(ids); i++ { // settling may push more spans out of the index
		u, more := a.settle(settleRequest{id: ids[i], force: true})
		errs = append(errs, a.release(ctx, u))
		a.c.pendingOverflow.Add(uint64(len(more)))
		ids = append(ids, more...)
	}
	return errors.Join(errs...)
}

// logBackground logs an error of background work at most once a minute: counters say how
// often, the log says what.
func (a *Assembler) logBackground(err error) {
	if err == nil {
		return
	}
	now := time.Now().UnixNano()
	last := a.lastLog.Load()
	if now-last < int64(time.Minute) || !a.lastLog.CompareAndSwap(last, now) {
		return
	}
	a.opts.Logger.Warn("pinpoint trace: background emit failed", "err", err)
}

// stripe returns the lock of a span key.
func (a *Assembler) stripe(id string) *sync.Mutex {
	return &a.stripes[maphash.String(a.seed, id)%numStripes]
}
