// Package io is apmkit's uploader: bounded per-category queues, batching to line protocol,
// and independent outputs (dataway, influxdb, influxdb2, file), each with retries, a disk
// spill that survives restarts, and counts of everything it sends or loses.
//
//	Feed -> category queue (bounded, points) -> batcher (encode, cut) --+--> output worker -> sender
//	                                                                     |     memory queue / spill
//	                                                                     +--> output worker -> ...
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
	"github.com/prometheus/client_golang/prometheus"
)

// Uploader ships points to the configured outputs. Create it with New, then Start; Feed is
// safe for concurrent use; Stop flushes and is idempotent.
type Uploader struct {
	cfg       Config
	dataDir   string
	log       *slog.Logger
	reg       prometheus.Registerer
	metrics   *metricsCollector
	codec     *gzipCodec
	queues    []*pointQueue       // indexed like point.Categories
	counters  []*categoryCounters // indexed like point.Categories
	outputs   []*outputWorker
	routes    [][]*outputWorker // per category: the outputs that take it
	lastErr   lastError         // uploader-level (queue full, invalid points)
	feedLog   logLimiter
	rejectLog logLimiter

	// accepting mirrors state == stateRunning for Feed, which runs on every input's hot path
	// and should not take a lock for it.
	accepting atomic.Bool
	mu        sync.Mutex
	state     uploaderState
	batchers  sync.WaitGroup
	workers   sync.WaitGroup
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
// previous run, HTTP clients. With no output configured it writes files under dataDir/out.
// Self-metrics are registered on reg (nil: not registered); Stop unregisters them.
func New(cfg Config, dataDir string, log *slog.Logger, reg prometheus.Registerer) (*Uploader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dataDir == "" {
		return nil, errors.New("io: data dir: required (spill and file output live there)")
	}
	// Validate writes defaults into the outputs: work on a copy of the caller's slice.
	cfg.Outputs = append([]OutputConfig(nil), cfg.Outputs...)
	if len(cfg.Outputs) == 0 {
		cfg.Outputs = []OutputConfig{{Type: TypeFile}}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("io: config: %w", err)
	}
	u := &Uploader{
		cfg:       cfg,
		dataDir:   dataDir,
		log:       log,
		reg:       reg,
		codec:     &gzipCodec{},
		feedLog:   logLimiter{every: time.Minute},
		rejectLog: logLimiter{every: time.Minute},
	}
	u.buildQueues()
	if err := u.buildOutputs(); err != nil {
		u.closeSenders()
		return nil, err
	}
	u.warnOrphanSpills()
	u.metrics = newMetricsCollector(u)
	if reg != nil {
		if err := reg.Register(u.metrics); err != nil {
			u.closeSenders()
			return nil, fmt.Errorf("io: register metrics: %w", err)
		}
	}
	return u, nil
}

func (u *Uploader) buildQueues() {
	for range point.Categories {
		u.queues = append(u.queues, newPointQueue(u.cfg.QueueMaxPoints))
		u.counters = append(u.counters, &categoryCounters{})
	}
	u.routes = make([][]*outputWorker, len(point.Categories))
}

func (u *Uploader) buildOutputs() error {
	for i := range u.cfg.Outputs {
		oc := &u.cfg.Outputs[i]
		if oc.Type == TypeFile && oc.Dir == "" {
			oc.Dir = filepath.Join(u.dataDir, "out")
		}
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
	s, err := newSender(oc)
	if err != nil {
		return nil, err
	}
	counters := newOutputCounters()
	dir := filepath.Join(u.dataDir, "spill", oc.Name)
	spill, err := openSpillQueue(dir, int64(oc.CapacityMB)<<20, u.codec, counters.drop)
	if err != nil {
		_ = s.close()
		return nil, err
	}
	if n, size := spill.size(); n > 0 {
		u.log.Info("io: spilled batches from a previous run will be delivered first",
			"output", oc.Name, "batches", n, "bytes", size)
	}
	return newOutputWorker(oc, s, spill, counters, u.log), nil
}

func newSender(oc OutputConfig) (sender, error) {
	switch oc.Type {
	case TypeDataway:
		return newDatawaySender(oc)
	case TypeInfluxDB:
		return newInfluxDBSender(oc)
	case TypeInfluxDB2:
		return newInfluxDB2Sender(oc)
	case TypeFile:
		return newFileSender(oc)
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

// Start launches one batcher per category and one worker per output. Outputs with spilled
// batches from a previous run start by draining them. ctx is not kept.
func (u *Uploader) Start(_ context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != stateNew {
		return errors.New("io: Start: already started or stopped")
	}
	u.state = stateRunning
	u.accepting.Store(true)
	for _, w := range u.outputs {
		u.workers.Add(1)
		go func() {
			defer u.workers.Done()
			w.run()
		}()
	}
	for ci, c := range point.Categories {
		bt := u.newBatcher(ci, c)
		u.batchers.Add(1)
		go func() {
			defer u.batchers.Done()
			bt.run()
		}()
	}
	return nil
}

func (u *Uploader) newBatcher(ci int, c point.Category) *batcher {
	routes := u.routes[ci]
	return &batcher{
		cat:       c,
		queue:     u.queues[ci],
		counters:  u.counters[ci],
		codec:     u.codec,
		maxPoints: u.cfg.BatchMaxPoints,
		maxBytes:  u.cfg.BatchMaxBytes,
		interval:  u.cfg.FlushInterval,
		emit: func(b *batch) {
			for _, w := range routes {
				w.enqueue(b)
			}
		},
		rejected: u.noteRejected,
	}
}

// noteRejected keeps the latest invalid point's error for Stats and logs one example a
// minute: the counts by reason are in the metrics.
func (u *Uploader) noteRejected(err error) {
	err = fmt.Errorf("io: invalid point rejected: %w", err)
	u.lastErr.set(err)
	if ok, suppressed := u.rejectLog.allow(); ok {
		u.log.Warn("io: invalid point rejected (counted in apmkit_io_points_rejected_total)", "err", err, "suppressed", suppressed)
	}
}

// Feed queues points for upload and returns once they are queued. It waits at most
// feed_timeout (or until ctx ends) for room; what does not fit is dropped, counted and
// reported with an error wrapping ErrQueueFull. Invalid points are not checked here: the
// batcher rejects and counts them. The uploader keeps the points (not the slice): callers
// must not modify them after Feed.
func (u *Uploader) Feed(ctx context.Context, cat point.Category, pts []*point.Point) error {
	ci := categoryIndex(cat)
	if ci < 0 {
		return fmt.Errorf("io: feed: %w", errUnknownCategory(cat))
	}
	if len(pts) == 0 {
		return nil
	}
	counters := u.counters[ci]
	if len(u.routes[ci]) == 0 {
		// The config sends this category nowhere: a choice, not an error, but visible.
		counters.dropped[dropNoOutput].Add(int64(len(pts)))
		return nil
	}
	if !u.accepting.Load() {
		counters.dropped[dropNotRunning].Add(int64(len(pts)))
		return fmt.Errorf("io: feed %s: %d points: %w", cat, len(pts), ErrNotRunning)
	}
	n, err := u.queues[ci].push(ctx, pts, u.cfg.FeedTimeout)
	counters.in.Add(int64(n))
	if err == nil {
		return nil
	}
	lost := int64(len(pts) - n)
	if errors.Is(err, errQueueClosed) {
		counters.dropped[dropNotRunning].Add(lost)
		return fmt.Errorf("io: feed %s: %d points: %w", cat, lost, ErrNotRunning)
	}
	counters.dropped[dropQueueFull].Add(lost)
	err = fmt.Errorf("io: feed %s: %d of %d points dropped: %w", cat, lost, len(pts), err)
	u.lastErr.set(err)
	if ok, suppressed := u.feedLog.allow(); ok {
		u.log.Warn("io: queue full, points dropped", "err", err, "suppressed", suppressed)
	}
	return err
}

func errUnknownCategory(cat point.Category) error {
	return fmt.Errorf("unknown category %s", cat)
}

// Stop stops accepting points, turns the queues into batches, gives the outputs until
// stop_timeout (or ctx's end, if sooner) to deliver them, spills what is left and returns
// when every goroutine has exited. It is idempotent and safe before Start.
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

	for _, q := range u.queues {
		q.close()
	}
	if wasRunning {
		// Batchers never wait on the network: this is encoding time (plus spill writes for
		// outputs that are down), not delivery time.
		u.batchers.Wait()
		u.drainOutputs(ctx, deadline.C)
	}
	for _, w := range u.outputs {
		w.cancel()
	}
	err := u.closeSenders()
	if u.reg != nil {
		u.reg.Unregister(u.metrics)
	}
	u.logStopSummary()
	return err
}

// drainOutputs lets workers deliver their memory queues until the deadline, then cancels
// them: in-flight requests abort and what is left goes to the spill.
func (u *Uploader) drainOutputs(ctx context.Context, deadline <-chan time.Time) {
	for _, w := range u.outputs {
		close(w.draining)
	}
	done := make(chan struct{})
	go func() {
		u.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-deadline:
	case <-ctx.Done():
	}
	for _, w := range u.outputs {
		w.cancel()
	}
	<-done
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

// Outputs describes where the uploader writes, one line per output, secrets masked, for the
// startup log line: "file: data/out", "dataway: https://openway.guance.com?token=tkn_****abcd".
func (u *Uploader) Outputs() []string {
	out := make([]string, 0, len(u.outputs))
	for _, w := range u.outputs {
		out = append(out, w.sender.describe())
	}
	return out
}
