package io

import (
	"time"

	"github.com/apmkit/apmkit/point"
)

// batcher turns one category's queue into batches: it encodes points to line protocol and
// cuts a batch at batch_max_points, batch_max_bytes or flush_interval after its first point.
// It never waits on an output (outputs take a batch into memory or their spill at once), so
// a slow output cannot stall the queue.
type batcher struct {
	cat       point.Category
	queue     *pointQueue
	counters  *categoryCounters
	codec     *gzipCodec
	maxPoints int
	maxBytes  int
	interval  time.Duration
	emit      func(*batch) // hands a batch to the outputs of the category
	rejected  func(err error)

	enc     *point.Encoder
	points  int       // points in the batch being built
	started time.Time // when its first point was added
	timer   *time.Timer
}

func (bt *batcher) run() {
	bt.enc = point.NewEncoder()
	bt.timer = time.NewTimer(time.Hour)
	bt.timer.Stop()
	defer bt.timer.Stop()
	buf := make([]*point.Point, 0, bt.maxPoints)
	for {
		pts, done := bt.queue.pop(buf, bt.maxPoints)
		if len(pts) > 0 {
			bt.addAll(pts)
			clear(pts) // let the points be collected; buf is reused
			continue
		}
		if done {
			bt.flush()
			return
		}
		select {
		case <-bt.queue.ready:
		case <-bt.timer.C:
			bt.flush()
		}
	}
}

func (bt *batcher) addAll(pts []*point.Point) {
	for _, p := range pts {
		bt.add(p)
	}
	// A queue that never runs dry would never let the timer case run: check the age here.
	if bt.points > 0 && time.Since(bt.started) >= bt.interval {
		bt.flush()
	}
}

func (bt *batcher) add(p *point.Point) {
	if p == nil {
		bt.counters.rejected[rejectNilPoint].Add(1)
		bt.counters.dropped[dropInvalid].Add(1)
		return
	}
	before := bt.enc.Len()
	if err := bt.enc.Encode(p); err != nil {
		bt.counters.rejected[rejectReasonOf(err)].Add(1)
		bt.counters.dropped[dropInvalid].Add(1)
		bt.rejected(err)
		return
	}
	if bt.enc.Len() > bt.maxBytes && bt.points > 0 {
		// The line does not fit: send the lines before it and start the next batch with it.
		// Re-encoding one line per cut is cheaper than a second buffer for every line.
		bt.emitBytes(bt.enc.Bytes()[:before], bt.points)
		bt.enc.Reset()
		_ = bt.enc.Encode(p) // it just encoded, so it is valid
	}
	bt.points++
	if bt.points == 1 {
		bt.started = time.Now()
		bt.timer.Reset(bt.interval)
	}
	if bt.points >= bt.maxPoints || bt.enc.Len() >= bt.maxBytes {
		bt.flush()
	}
}

func (bt *batcher) flush() {
	if bt.points == 0 {
		return
	}
	bt.emitBytes(bt.enc.Bytes(), bt.points)
	bt.enc.Reset()
}

// emitBytes copies the lines out of the encoder (whose buffer is reused) into a batch.
func (bt *batcher) emitBytes(lines []byte, points int) {
	raw := append([]byte(nil), lines...)
	bt.counters.batched.Add(int64(points))
	bt.counters.batches.Add(1)
	bt.points = 0
	bt.timer.Stop()
	bt.emit(newBatch(bt.cat, points, raw, bt.codec))
}
