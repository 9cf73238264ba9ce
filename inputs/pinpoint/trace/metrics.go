package trace

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// refKind is a kind of metadata id a span refers to.
type refKind uint8

const (
	refAPI refKind = iota
	refSQL
	refSQLUID
	refString
	refException
	numRefKinds
)

// refKindNames are the placeholder prefixes and the kind label of the unresolved counter.
var refKindNames = [numRefKinds]string{"api", "sql", "sqluid", "string", "exception"}

func (k refKind) String() string { return refKindNames[k] }

// Stats is a snapshot of the assembler's counters (totals since New) and gauges (now).
type Stats struct {
	Spans        uint64 `json:"spans"`         // PSpans taken
	Events       uint64 `json:"events"`        // span events emitted as spans
	Chunks       uint64 `json:"chunks"`        // PSpanChunks taken, sync and async
	AsyncChunks  uint64 `json:"async_chunks"`  // of those, with a localAsyncId
	PartialSpans uint64 `json:"partial_spans"` // spans emitted as partial: chunks whose span never came
	LateChunks   uint64 `json:"late_chunks"`   // sync chunks that came after their span, linked through its skeleton
	// DeferredChunks counts sync chunks kept waiting because a parent of one of their
	// events may be in a chunk not received yet.
	DeferredChunks  uint64 `json:"deferred_chunks"`
	DuplicateEvents uint64 `json:"duplicate_events"` // events dropped because their sequence was already taken
	// HeldForMetadata counts spans and chunks that waited for metadata (Held is how many
	// wait now).
	HeldForMetadata uint64 `json:"held_for_metadata"`
	// Unresolved counts placeholders written, by kind (api, sql, sqluid, string,
	// exception).
	Unresolved map[string]uint64 `json:"unresolved"`
	// RestoredHeld counts spans and chunks that were still waiting for metadata when the
	// previous run stopped, read back from the store at Start to wait again.
	RestoredHeld uint64 `json:"restored_held"`
	// RestoredUnresolved counts those that were written with placeholders all the same:
	// their metadata did not come within MetadataWait of the restart either.
	RestoredUnresolved uint64 `json:"restored_unresolved"`
	// HeldOverflow and PendingOverflow count spans emitted early because a cap was hit.
	HeldOverflow    uint64 `json:"held_overflow"`
	PendingOverflow uint64 `json:"pending_overflow"`
	Invalid         uint64 `json:"invalid"`      // messages refused (no transaction id)
	EmitErrors      uint64 `json:"emit_errors"`  // Emit errors for points released by the background work
	StoreErrors     uint64 `json:"store_errors"` // failed reads and writes of Options.Store, records that did not decode
	Held            int64  `json:"held"`         // spans and chunks held in memory for metadata now
	HeldBytes       int64  `json:"held_bytes"`
	PendingSpans    int64  `json:"pending_spans"` // spans with chunks waiting in Store now
	PendingBytes    int64  `json:"pending_bytes"`
	Skeletons       int64  `json:"skeletons"` // emitted spans remembered for late chunks now
	SkeletonBytes   int64  `json:"skeleton_bytes"`
}

// counters are the assembler's self-metrics. Plain atomics are the source of truth, so the
// hot path pays one atomic add per count and Prometheus reads them only when scraped.
type counters struct {
	spans, events, chunks, asyncChunks, partialSpans, lateChunks atomic.Uint64
	deferredChunks, duplicateEvents, heldForMetadata             atomic.Uint64
	unresolved                                                   [numRefKinds]atomic.Uint64
	restoredHeld, restoredUnresolved                             atomic.Uint64
	heldOverflow, pendingOverflow                                atomic.Uint64
	invalid, emitErrors, storeErrors                             atomic.Uint64
}

func (c *counters) addUnresolved(n *[numRefKinds]int) {
	for k, v := range n {
		if v > 0 {
			c.unresolved[k].Add(uint64(v))
		}
	}
}

// register exposes the counters (and the gauges read by gauge) on reg.
func (c *counters) register(reg prometheus.Registerer, gauge func() Stats) error {
	if reg == nil {
		return nil
	}
	const prefix = "apmkit_pinpoint_trace_"
	counter := func(name, help string, v *atomic.Uint64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: prefix + name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	g := func(name, help string, read func(Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: prefix + name, Help: help},
			func() float64 { return float64(read(gauge())) })
	}
	cs := []prometheus.Collector{
		counter("spans_total", "Pinpoint spans (PSpan) assembled.", &c.spans, nil),
		counter("events_total", "Span events emitted as spans.", &c.events, nil),
		counter("chunks_total", "Span chunks (PSpanChunk) taken, sync and async.", &c.chunks, nil),
		counter("async_chunks_total", "Span chunks with a localAsyncId.", &c.asyncChunks, nil),
		counter("partial_spans_total", "Chunks emitted without their span (it never came in time); their points carry partial=true.", &c.partialSpans, nil),
		counter("late_chunks_total", "Sync chunks that arrived after their span and were linked through its skeleton.", &c.lateChunks, nil),
		counter("deferred_chunks_total", "Sync chunks kept waiting because a parent of an event may be in a chunk not yet received.", &c.deferredChunks, nil),
		counter("duplicate_events_total", "Span events dropped because an event with the same sequence was already taken.", &c.duplicateEvents, nil),
		counter("held_total", "Spans and chunks held in memory because names were not resolvable yet.", &c.heldForMetadata, nil),
		counter("restored_held_total", "Spans and chunks still waiting for metadata at the last stop, put back on hold at start.", &c.restoredHeld, nil),
		counter("restored_unresolved_total", "Of the restored spans and chunks, those written with placeholders: their metadata did not come after the restart either.", &c.restoredUnresolved, nil),
		counter("overflow_total", "Spans emitted early because a memory cap was hit.", &c.heldOverflow, prometheus.Labels{"queue": "held"}),
		counter("overflow_total", "Spans emitted early because a memory cap was hit.", &c.pendingOverflow, prometheus.Labels{"queue": "pending"}),
		counter("invalid_total", "Spans and chunks refused (no transaction id).", &c.invalid, nil),
		counter("emit_errors_total", "Emit failures of points released by background work.", &c.emitErrors, nil),
		counter("store_errors_total", "Failed reads and writes of the store (pending chunks, held spans, skeletons), and records that did not decode.", &c.storeErrors, nil),
		g("held_spans", "Spans and chunks held in memory waiting for metadata.", func(s Stats) int64 { return s.Held }),
		g("held_bytes", "Estimated memory of the held spans and chunks.", func(s Stats) int64 { return s.HeldBytes }),
		g("pending_spans", "Spans whose chunks wait in the store for them.", func(s Stats) int64 { return s.PendingSpans }),
		g("pending_bytes", "Bytes of chunks waiting in the store.", func(s Stats) int64 { return s.PendingBytes }),
		g("skeleton_bytes", "Memory of the skeletons of emitted spans kept for late chunks.", func(s Stats) int64 { return s.SkeletonBytes }),
	}
	for k := range numRefKinds {
		cs = append(cs, counter("unresolved_total", "Placeholders written for metadata ids that were not known in time, by kind.",
			&c.unresolved[k], prometheus.Labels{"kind": k.String()}))
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("trace: register metrics: %w", err)
		}
	}
	return nil
}

// snapshot fills the counter part of Stats.
func (c *counters) snapshot() Stats {
	s := Stats{
		Spans: c.spans.Load(), Events: c.events.Load(), Chunks: c.chunks.Load(),
		AsyncChunks: c.asyncChunks.Load(), PartialSpans: c.partialSpans.Load(),
		LateChunks: c.lateChunks.Load(), DeferredChunks: c.deferredChunks.Load(),
		DuplicateEvents: c.duplicateEvents.Load(), HeldForMetadata: c.heldForMetadata.Load(),
		HeldOverflow: c.heldOverflow.Load(), PendingOverflow: c.pendingOverflow.Load(),
		Invalid: c.invalid.Load(), EmitErrors: c.emitErrors.Load(), StoreErrors: c.storeErrors.Load(),
		RestoredHeld: c.restoredHeld.Load(), RestoredUnresolved: c.restoredUnresolved.Load(),
		Unresolved: make(map[string]uint64, numRefKinds),
	}
	for k := range numRefKinds {
		s.Unresolved[k.String()] = c.unresolved[k].Load()
	}
	return s
}
