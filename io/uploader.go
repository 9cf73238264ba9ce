// Package io is apmkit's uploader: line protocol encoded where points are fed, batched per
// category within a memory budget in bytes, and independent outputs (dataway, influxdb,
// influxdb2, file, otlp, and local: the explorer's trace store), each with retries, a disk
// spill that survives restarts, and counts of everything it sends or loses.
//
//	Feed (caller's goroutine: validate, encode) -> category intake (open batch, cut by
//	points, bytes or age) --+--> output: memory queue -> senders (max_in_flight) -> gzip, send
//	                        |             \-> spill writer (oldest batches, when behind) -> disk
//	                        |                 (senders: memory first, then the disk spill)
//	                        +--> output: ...
package io

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/tracestore"
	"github.com/prometheus/client_golang/prometheus"
)

// Uploader ships points to the configured outputs. Create it with New, then Start; Feed is
// safe for concurrent use; Stop flushes and is idempotent.
type Uploader struct {
	cfg      Config
	dataDir  string
	log      *slog.Logger
	reg      prometheus.Registerer
	metrics  *metricsCollector
	codec    *gzipCodec
	budget   *byteBudget
	buffers  *bufferPool
	intakes  []*intake           // indexed like point.Categories
	counters []*categoryCounters // indexed like point.Categories
	outputs  []*outputWorker
	routes   [][]*outputWorker // per category: the outputs that take it
	store    *tracestore.Store // the local output's store, nil without one
	scratch  sync.Pool         // *feedScratch: Feed's encoder and line index
	lastErr  lastError         // uploader-level (queue full, invalid points)
	drops    *dropLog          // losses before any output
	dropLogs []*dropLog        // drops and every output's: flushed at Stop

	// accepting mirrors state == stateRunning for Feed, which runs on every input's hot path
	// and should not take a lock for it.
	accepting atomic.Bool
	mu        sync.Mutex
	state     uploaderState
	stopOnce  sync.Once
	stopError error
}

type uploaderState int

const (
	stateNew uploaderState = iota
	stateRunning
	stateStopped
)

// New validates cfg (filling defaults) and prepares the outputs: folders, spills left by a
// previous run, HTTP clients, the local trace store. With no output configured it writes
// files under dataDir/out; with cfg.Explorer it adds a local output (WithImplicitOutputs).
// Self-metrics are registered on reg (nil: not registered); Stop unregisters them.
func New(cfg Config, dataDir string, log *slog.Logger, reg prometheus.Registerer) (*Uploader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dataDir == "" {
		return nil, errors.New("io: data dir: required (spill and file output live there)")
	}
	// Validate writes defaults into the outputs: WithImplicitOutputs copies the caller's.
	cfg.Outputs = cfg.WithImplicitOutputs(dataDir)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("io: config: %w", err)
	}
	u := &Uploader{
		cfg:     cfg,
		dataDir: dataDir,
		log:     log,
		reg:     reg,
		codec:   &gzipCodec{},
		budget:  newByteBudget(int64(cfg.QueueMaxMB) << 20),
		// Idle batch buffers, up to a quarter of the budget: a spill group gives back up to an
		// eighth at once, and a smaller pool let most of it go to the garbage collector
		// while the intake allocated (and zeroed) new buffers under its lock.
		buffers: &bufferPool{maxBytes: int64(cfg.QueueMaxMB) << 18},
		drops:   newDropLog(log, ""),
	}
	u.dropLogs = []*dropLog{u.drops}
	u.scratch.New = func() any { return &feedScratch{enc: point.NewEncoder()} }
	u.counters = make([]*categoryCounters, len(point.Categories))
	for ci := range u.counters {
		u.counters[ci] = &categoryCounters{}
	}
	u.routes = make([][]*outputWorker, len(point.Categories))
	if err := u.buildOutputs(); err != nil {
		u.closeSenders()
		u.flushDropLogs()
		return nil, err
	}
	u.buildIntakes()
	u.warnOrphanSpills()
	u.metrics = newMetricsCollector(u)
	if reg != nil {
		if err := reg.Register(u.metrics); err != nil {
			u.closeSenders()
			u.flushDropLogs()
			return nil, fmt.Errorf("io: register metrics: %w", err)
		}
	}
	return u, nil
}

func (u *Uploader) buildIntakes() {
	for ci, c := range point.Categories {
		u.intakes = append(u.intakes, newIntake(c, u.counters[ci], u.budget, u.codec, u.buffers, u.cfg, u.routes[ci]))
	}
}

func (u *Uploader) buildOutputs() error {
	for i := range u.cfg.Outputs {
		oc := &u.cfg.Outputs[i]
		w, err := u.buildOutput(*oc)
		if err != nil {
			return fmt.Errorf("io: output %s: %w", oc.Name, err)
		}
		u.outputs = append(u.outputs, w)
		cats := oc.categorySet()
		for ci, c := range point.Categories {
			if cats[c] {
				u.routes[ci] = append(u.routes[ci], w)
			}
		}
	}
	return nil
}

func (u *Uploader) buildOutput(oc OutputConfig) (*outputWorker, error) {
	s, err := newSender(oc, u.codec, u.log.With("output", oc.Name))
	if err != nil {
		return nil, err
	}
	if ls, ok := s.(*localSender); ok {
		u.store = ls.store
	}
	counters := newOutputCounters()
	log := u.log.With("output", oc.Name)
	drops := newDropLog(log, s.location())
	u.dropLogs = append(u.dropLogs, drops)
	onDrop := func(cat point.Category, points int, reason dropReason, err error) {
		counters.drop(cat, points, reason)
		drops.note(cat, points, reason, err)
	}
	dir := filepath.Join(u.dataDir, "spill", oc.Name)
	spill, err := openSpillQueue(dir, int64(oc.CapacityMB)<<20, u.codec, onDrop)
	if err != nil {
		_ = s.close()
		return nil, err
	}
	if n, size := spill.size(); n > 0 {
		u.log.Info("io: spilled batches from a previous run will be delivered, beside new ones",
			"output", oc.Name, "batches", n, "bytes", size)
	}
	// An output that falls behind keeps at most a quarter of the budget in its memory queue
	// (and spills in groups of up to an eighth): the rest keeps the intake, its many
	// concurrent Feed calls (each reserves its lines before appending them) and the other
	// outputs moving while this one spills. With half, 500 agents' Feed calls waited on a
	// full budget for seconds whenever the spill writer fell behind a little.
	return newOutputWorker(oc, s, spill, counters, drops, u.budget.max/4, log), nil
}

func newSender(oc OutputConfig, codec *gzipCodec, log *slog.Logger) (sender, error) {
	switch oc.Type {
	case TypeLocal:
		return newLocalSender(oc, log)
	case TypeDataway:
		return newDatawaySender(oc)
	case TypeInfluxDB:
		return newInfluxDBSender(oc)
	case TypeInfluxDB2:
		return newInfluxDB2Sender(oc)
	case TypeFile:
		return newFileSender(oc)
	case TypeOTLP:
		return newOTLPSender(oc, codec)
	}
	return nil, fmt.Errorf("unknown type %q", oc.Type) // Validate makes this unreachable
}

// warnOrphanSpills points at spill folders of outputs that are no longer configured: their
// batches are kept, not delivered, until an output of that name comes back.
func (u *Uploader) warnOrphanSpills() {
	entries, err := os.ReadDir(filepath.Join(u.dataDir, "spill"))
	if err != nil {
		return
	}
	known := map[string]bool{}
	for _, w := range u.outputs {
		known[w.name] = true
	}
	for _, e := range entries {
		if e.IsDir() && !known[e.Name()] {
			u.log.Warn("io: spill folder of an output that is not configured; its batches wait for an output of that name",
				"dir", filepath.Join(u.dataDir, "spill", e.Name()))
		}
	}
}

// Start launches every output's senders and spill writer. Outputs with spilled batches
// from a previous run start by draining them. ctx is not kept.
func (u *Uploader) Start(_ context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != stateNew {
		return errors.New("io: Start: already started or stopped")
	}
	u.state = stateRunning
	for _, w := range u.outputs {
		w.start()
	}
	u.accepting.Store(true)
	return nil
}

// noteRejected counts an invalid point, keeps its error for Stats and logs it with the
// others (one line a minute, with the latest error as an example): the counts by reason
// are in the metrics.
func (u *Uploader) noteRejected(counters *categoryCounters, cat point.Category, reason rejectReason, err error) {
	counters.rejected[reason].Add(1)
	counters.dropped[dropInvalid].Add(1)
	err = fmt.Errorf("io: invalid point rejected: %w", err)
	u.lastErr.set(err)
	u.drops.note(cat, 1, dropInvalid, err)
}

// dropped counts and logs points lost before any output.
func (u *Uploader) dropped(counters *categoryCounters, cat point.Category, points int, reason dropReason, err error) {
	counters.dropped[reason].Add(int64(points))
	u.drops.note(cat, points, reason, err)
}

// ErrQueueFull is returned (wrapped, with the number of dropped points) by Feed when the
// memory budget (queue_max_mb) stayed in use for feed_timeout, or the caller's context ended
// first, and points were dropped. Test it with errors.Is.
var ErrQueueFull = errors.New("io: queue full, points dropped")

// ErrNotRunning is returned by Feed before Start and after Stop; the points are dropped and
// counted (reason not_running).
var ErrNotRunning = errors.New("io: uploader not running, points dropped")

// Feed validates and encodes points to line protocol in the calling goroutine and appends
// them to the category's open batch; it returns once they are there. When the memory
// budget (queue_max_mb) is spent it waits at most feed_timeout (or until ctx ends) for
// room; what does not fit is dropped, counted and reported with an error wrapping
// ErrQueueFull. Invalid points are counted and skipped, not an error. The uploader keeps
// neither the points nor the slice: callers may reuse both once Feed returns.
func (u *Uploader) Feed(ctx context.Context, cat point.Category, pts []*point.Point) error {
	ci := categoryIndex(cat)
	if ci < 0 {
		return fmt.Errorf("io: feed: %w", errUnknownCategory(cat))
	}
	return u.feedCategory(ctx, ci, len(pts), func(sc *feedScratch, done int) int {
		return u.encodeChunk(sc, cat, u.counters[ci], pts[done:])
	})
}

// feedCategory feeds n points of category ci that encode turns into lines, and accounts
// for them: accepted, or dropped with the reason.
func (u *Uploader) feedCategory(ctx context.Context, ci, n int, encode func(sc *feedScratch, done int) int) error {
	if n == 0 {
		return nil
	}
	cat := point.Categories[ci]
	counters := u.counters[ci]
	if len(u.routes[ci]) == 0 {
		// The config sends this category nowhere: a choice, not an error, but visible.
		u.dropped(counters, cat, n, dropNoOutput, nil)
		return nil
	}
	if !u.accepting.Load() {
		err := fmt.Errorf("io: feed %s: %d points: %w", cat, n, ErrNotRunning)
		u.dropped(counters, cat, n, dropNotRunning, err)
		return err
	}
	lost, err := u.feedChunks(ctx, u.intakes[ci], n, encode)
	counters.in.Add(int64(n - lost))
	if err == nil {
		return nil
	}
	if errors.Is(err, errBudgetClosed) {
		err := fmt.Errorf("io: feed %s: %d points: %w", cat, lost, ErrNotRunning)
		u.dropped(counters, cat, lost, dropNotRunning, err)
		return err
	}
	err = fmt.Errorf("io: feed %s: %d of %d points dropped: %w", cat, lost, n, err)
	u.lastErr.set(err)
	u.dropped(counters, cat, lost, dropQueueFull, err)
	return err
}

// feedScratch is one Feed call's encoder and line index, pooled by the Uploader.
type feedScratch struct {
	enc   *point.Encoder
	lines lines
	spans []byte // FeedSpan's line buffer (spans encode themselves, not through enc)
}

// feedChunkBytes bounds a Feed call's encoded lines before they are committed, so a huge
// call does not need a huge scratch buffer (and pooled scratch stays small).
const feedChunkBytes = 256 << 10

// feed encodes pts chunk by chunk and commits each chunk whole; lost counts the points that
// were neither committed nor rejected as invalid.
// feedChunks commits what encode makes, chunk by chunk, until total points are consumed;
// encode fills sc.lines from point number done on and returns how many it consumed. lost
// counts the points that were neither committed nor rejected as invalid.
func (u *Uploader) feedChunks(ctx context.Context, in *intake, total int, encode func(sc *feedScratch, done int) int) (lost int, err error) {
	sc := u.scratch.Get().(*feedScratch)
	defer u.putScratch(sc)
	var timer *time.Timer // feed_timeout for the whole call, started on the first wait
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	deadline := func() <-chan time.Time {
		if timer == nil {
			timer = time.NewTimer(u.cfg.FeedTimeout)
		}
		return timer.C
	}
	for done := 0; done < total; {
		n := encode(sc, done)
		done += n
		if err := in.commit(ctx, &sc.lines, deadline); err != nil {
			return len(sc.lines.ends) + total - done, err
		}
	}
	return 0, nil
}

// encodeChunk encodes points until about feedChunkBytes are encoded; it counts the invalid
// ones and returns how many points it consumed.
func (u *Uploader) encodeChunk(sc *feedScratch, cat point.Category, counters *categoryCounters, pts []*point.Point) int {
	sc.enc.Reset()
	sc.lines.reset()
	n := 0
	for ; n < len(pts) && sc.enc.Len() < feedChunkBytes; n++ {
		p := pts[n]
		if p == nil {
			u.noteRejected(counters, cat, rejectNilPoint, errNilPoint)
			continue
		}
		if err := sc.enc.Encode(p); err != nil {
			u.noteRejected(counters, cat, rejectReasonOf(err), err)
			continue
		}
		sc.lines.ends = append(sc.lines.ends, sc.enc.Len())
	}
	sc.lines.buf = sc.enc.Bytes()
	return n
}

// putScratch pools a scratch unless one huge line grew it: pooled memory stays small.
func (u *Uploader) putScratch(sc *feedScratch) {
	if cap(sc.lines.buf) > 4*feedChunkBytes || cap(sc.spans) > 4*feedChunkBytes {
		return
	}
	sc.lines.buf = nil
	u.scratch.Put(sc)
}

var errNilPoint = errors.New("nil point")

func errUnknownCategory(cat point.Category) error {
	return fmt.Errorf("unknown category %s", cat)
}

// Stop stops accepting points, cuts the open batches, gives the outputs until
// stop_timeout (or ctx's end, if sooner) to deliver what they hold (and what their spills
// hold, while they accept it), spills what is left and returns when every goroutine has
// exited. It is idempotent and safe before Start.
func (u *Uploader) Stop(ctx context.Context) error {
	u.stopOnce.Do(func() { u.stopError = u.stop(ctx) })
	return u.stopError
}

func (u *Uploader) stop(ctx context.Context) error {
	deadline := time.NewTimer(u.cfg.StopTimeout)
	defer deadline.Stop()
	u.mu.Lock()
	wasRunning := u.state == stateRunning
	u.state = stateStopped
	u.accepting.Store(false)
	u.mu.Unlock()

	u.budget.close() // feeders waiting for room give up (not_running)
	for _, in := range u.intakes {
		in.close() // the last batches go to the outputs
	}
	if wasRunning {
		u.drainOutputs(ctx, deadline.C)
	}
	for _, w := range u.outputs {
		w.cancel()
		if err := w.spill.close(); err != nil {
			u.log.Warn("io: spill: could not record delivery progress; the next run may send some batches again", "output", w.name, "err", err)
		}
	}
	err := u.closeSenders()
	if u.reg != nil {
		u.reg.Unregister(u.metrics)
	}
	u.flushDropLogs()
	u.logStopSummary()
	return err
}

// flushDropLogs logs the losses still waiting for their line and stops the timers.
func (u *Uploader) flushDropLogs() {
	for _, l := range u.dropLogs {
		l.flush()
	}
}

// drainOutputs lets outputs deliver until the deadline, then aborts them: in-flight
// requests are cancelled and what is left goes to the spill.
func (u *Uploader) drainOutputs(ctx context.Context, deadline <-chan time.Time) {
	for _, w := range u.outputs {
		w.beginStop()
	}
	done := make(chan struct{})
	go func() {
		for _, w := range u.outputs {
			w.waitSenders()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-deadline:
	case <-ctx.Done():
	}
	for _, w := range u.outputs {
		w.abort()
	}
	<-done
	for _, w := range u.outputs {
		w.finish()
	}
}

func (u *Uploader) closeSenders() error {
	var errs []error
	for _, w := range u.outputs {
		if err := w.sender.close(); err != nil {
			errs = append(errs, fmt.Errorf("io: close output %s: %w", w.name, err))
		}
	}
	return errors.Join(errs...)
}

func (u *Uploader) logStopSummary() {
	for _, w := range u.outputs {
		if n, size := w.spill.size(); n > 0 {
			u.log.Info("io: batches kept in the spill for the next run", "output", w.name, "batches", n, "bytes", size)
		}
	}
}

// TraceStore is the local output's store, for the explorer to read; nil without a local
// output. It is closed by Stop.
func (u *Uploader) TraceStore() *tracestore.Store { return u.store }

// Outputs describes where the uploader writes, one line per output, secrets masked, for the
// startup log line: "file: data/out", "dataway: https://openway.guance.com?token=tkn_****abcd".
func (u *Uploader) Outputs() []string {
	out := make([]string, 0, len(u.outputs))
	for _, w := range u.outputs {
		out = append(out, w.sender.describe())
	}
	return out
}
