package io

import (
	"time"

	"github.com/apmkit/apmkit/point"
)

// Stats is a snapshot of the uploader for `apmkit monitor` and the HTTP API (JSON-friendly).
type Stats struct {
	Categories []CategoryStats `json:"categories"`
	Outputs    []OutputStats   `json:"outputs"`
	// QueueBytes is the line protocol held in memory (batches being filled or waiting for
	// an output, and their gzip forms); QueueCapacityBytes is io.queue_max_mb.
	QueueBytes         int64 `json:"queue_bytes"`
	QueueCapacityBytes int64 `json:"queue_capacity_bytes"`
	// LastError is the most recent error of the uploader or any output, "" if none.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// CategoryStats counts one category before the outputs.
type CategoryStats struct {
	Category string `json:"category"`
	// QueuePoints counts the points held in memory: in the batch being filled or in
	// batches waiting for an output.
	QueuePoints   int64 `json:"queue_points"`
	PointsIn      int64 `json:"points_in"`      // accepted by Feed
	PointsBatched int64 `json:"points_batched"` // encoded into batches for the outputs
	Batches       int64 `json:"batches"`
	// Rejected counts invalid points by validation reason (no_fields, bad_float...).
	Rejected map[string]int64 `json:"rejected,omitempty"`
	// Dropped counts points lost before any output: queue_full, not_running, invalid, no_output.
	Dropped map[string]int64 `json:"dropped,omitempty"`
}

// OutputStats counts one output.
type OutputStats struct {
	Name            string           `json:"name"`
	Type            string           `json:"type"`
	URL             string           `json:"url"` // URL (secrets masked) or folder
	QueueBatches    int              `json:"queue_batches"`
	PointsSent      int64            `json:"points_sent"`
	PointsSentBy    map[string]int64 `json:"points_sent_by_category,omitempty"`
	BytesSent       int64            `json:"bytes_sent"` // on the wire, after compression
	BatchesSent     int64            `json:"batches_sent"`
	Retries         int64            `json:"retries"`
	PermanentErrors int64            `json:"permanent_errors"`
	SpillBytes      int64            `json:"spill_bytes"`
	SpillBatches    int              `json:"spill_batches"`
	SpilledBatches  int64            `json:"spilled_batches_total"`
	// Dropped counts points this output lost: permanent, malformed, too_large, spill_full,
	// spill_error, spill_corrupt, unmapped, rejected.
	Dropped map[string]int64 `json:"dropped,omitempty"`
	// State is what the last delivery attempt said: ok, failing (retried: network error,
	// timeout, 408, 429, 5xx) or config_error (401, 403, database or bucket not found: the
	// batches are kept until the config is fixed). LastError says why.
	State       string    `json:"state"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Stats returns a snapshot of the counts. Counters only grow; gauges (queue, spill) are live.
func (u *Uploader) Stats() Stats {
	s := Stats{QueueBytes: u.budget.inUse(), QueueCapacityBytes: u.budget.max}
	s.LastError, s.LastErrorAt = u.lastErr.get()
	for ci, c := range point.Categories {
		s.Categories = append(s.Categories, u.categoryStats(ci, c))
	}
	for _, w := range u.outputs {
		out := w.stats()
		if out.LastError != "" && out.LastErrorAt.After(s.LastErrorAt) {
			s.LastError, s.LastErrorAt = out.LastError, out.LastErrorAt
		}
		s.Outputs = append(s.Outputs, out)
	}
	return s
}

func (u *Uploader) categoryStats(ci int, c point.Category) CategoryStats {
	k := u.counters[ci]
	cs := CategoryStats{
		Category:      c.String(),
		QueuePoints:   k.queued.Load(),
		PointsIn:      k.in.Load(),
		PointsBatched: k.batched.Load(),
		Batches:       k.batches.Load(),
	}
	for r := rejectReason(0); r < numRejectReasons; r++ {
		cs.Rejected = addNonZero(cs.Rejected, r.String(), k.rejected[r].Load())
	}
	for r := dropReason(0); r < numDropReasons; r++ {
		cs.Dropped = addNonZero(cs.Dropped, r.String(), k.dropped[r].Load())
	}
	return cs
}

func (w *outputWorker) stats() OutputStats {
	k := w.counters
	spillBatches, spillBytes := w.spill.size()
	out := OutputStats{
		Name:            w.name,
		Type:            w.typ,
		URL:             w.sender.location(),
		State:           outputHealth(k.health.Load()).String(),
		QueueBatches:    w.memoryLen(),
		BytesSent:       k.bytesSent.Load(),
		BatchesSent:     k.batchesSent.Load(),
		Retries:         k.retries.Load(),
		PermanentErrors: k.permanentErrors.Load(),
		SpillBytes:      spillBytes,
		SpillBatches:    spillBatches,
		SpilledBatches:  k.spilledBatches.Load(),
	}
	out.LastError, out.LastErrorAt = k.lastErr.get()
	for ci, c := range point.Categories {
		pc := &k.perCategory[ci]
		sent := pc.sent.Load()
		out.PointsSent += sent
		out.PointsSentBy = addNonZero(out.PointsSentBy, c.String(), sent)
		for r := dropReason(0); r < numDropReasons; r++ {
			out.Dropped = addNonZero(out.Dropped, r.String(), pc.dropped[r].Load())
		}
	}
	return out
}

// addNonZero keeps the JSON short: only reasons that happened.
func addNonZero(m map[string]int64, key string, v int64) map[string]int64 {
	if v == 0 {
		return m
	}
	if m == nil {
		m = map[string]int64{}
	}
	m[key] += v
	return m
}
