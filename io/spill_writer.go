package io

import "fmt"

// The spill writer is one goroutine per output that moves the oldest memory batches to the
// disk spill when the output falls behind: when its memory queue is over its bounds, and only
// then (a spill that holds batches is no reason: the senders take memory batches first). It
// exists so that neither Feed (the gRPC handlers) nor the senders wait on file writes and
// fsyncs: the intake only appends to the memory queue, which the byte budget bounds.

// spillGroupMax bounds the batches written (and fsynced together) in one go.
const spillGroupMax = 16

func (w *outputWorker) runSpillWriter() {
	for {
		group, ok := w.takeForSpill()
		if !ok {
			return
		}
		w.writeSpill(group)
		w.mu.Lock()
		w.writing -= len(group)
		w.changed.Broadcast()
		w.mu.Unlock()
	}
}

// takeForSpill waits until the memory queue is over its bounds (or Stop wants it empty)
// and takes its oldest batches down to half the bounds: spilling in groups makes fewer,
// larger spill files. false means exit.
func (w *outputWorker) takeForSpill() ([]queuedBatch, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.overLocked(1) && !(w.finishing && len(w.memory) > 0) {
		if w.finishing {
			return nil, false
		}
		w.changed.Wait()
	}
	if !w.finishing {
		w.noteOutageLocked(w.behindReasonLocked())
	}
	var group []queuedBatch
	for len(group) < spillGroupMax && len(w.memory) > 0 && (w.finishing || w.overLocked(2)) {
		q := w.memory[0]
		w.memory[0] = queuedBatch{}
		w.memory = w.memory[1:]
		w.memBytes -= q.size
		group = append(group, q)
	}
	w.writing += len(group)
	return group, true
}

// overLocked: the memory queue holds more than 1/div of the batches or bytes this output
// may keep in memory.
func (w *outputWorker) overLocked(div int) bool {
	n := len(w.memory)
	return n > w.cfg.QueueMaxBatches/div || (n > 1 && w.memBytes > w.maxMemBytes/int64(div))
}

// writeSpill compresses (once per batch, shared with the senders of other outputs) and
// writes a group of batches, then lets go of them. Losses are counted and logged with their
// points and cause (see dropLog); a write error is also the output's last error.
func (w *outputWorker) writeSpill(group []queuedBatch) {
	items := make([]spillItem, 0, len(group))
	for _, q := range group {
		gz, err := q.b.gzipBytes(w.cfg.GzipLevel)
		if err != nil {
			err = fmt.Errorf("spill: %w", err)
			w.counters.lastErr.set(err)
			w.drop(q.b.cat, q.b.points, dropSpillError, err)
			continue
		}
		items = append(items, spillItem{seq: q.seq, cat: q.b.cat, points: q.b.points, gz: gz})
	}
	written, err := w.spill.pushGroup(items)
	w.counters.spilledBatches.Add(int64(written))
	if err != nil {
		w.counters.lastErr.set(err)
	}
	for _, q := range group {
		q.b.release()
	}
}
