// Package trace rebuilds what a Pinpoint agent recorded and turns it into span points
// (docs/SCHEMA.md): one entry span per PSpan and one span per span event, with
// parent links inside a span, across async work and across agents.
//
// The input hands every decoded PSpan and PSpanChunk to an Assembler (it implements the
// input's SpanConsumer) with the agent that SENT it; names are resolved against that
// agent run's metadata (Options.Meta). Each call to Options.Emit carries the points of one
// Pinpoint span (entry and events) or of one chunk, so a pipeline can decide per trace.
//
// What the assembler does with each message:
//
//   - PSpan: its events are decoded (sorted by sequence, startElapsed accumulated as
//     deltas, depth 0 = the previous event's depth), merged with the sync chunks that
//     waited for it, linked (parent = nearest preceding event one level up) and emitted.
//     A skeleton of the emitted events (sequence, depth, span_id) is kept for 2*ChunkWait
//     for chunks that arrive after their span.
//   - Sync PSpanChunk: waits in Options.Store until its span comes, or is linked through
//     the span's skeleton if the span came first. A chunk whose events may have their
//     parent in a chunk not received yet waits (deferred) until that chunk comes or
//     ChunkWait runs out. A chunk whose span never comes is emitted after ChunkWait as a
//     partial span (partial=true). Waiting chunks survive a restart.
//   - Async PSpanChunk (localAsyncId A, s): emitted at once, its depth-1 events under the
//     spawning event, whose id h(spanId, "async", A) needs no state.
//   - Names not resolvable yet (metadata can come after the spans that use it) make the
//     span wait in memory up to MetadataWait; MetadataArrived (wired to the metadata
//     store's OnPut) releases it as soon as the names arrive, else it goes out with
//     placeholders such as "api:12". Stop writes the spans still waiting to the store
//     instead of emitting them (the agent may send the metadata to the next process);
//     Start puts them back on hold for a fresh MetadataWait, and only then do they go out
//     with placeholders (counted as RestoredUnresolved). A record stays in the store
//     until its span is emitted.
//
// Span ids are deterministic (see ids.go), so any apmkit instance links any agent's spans
// with no shared state. Everything held in memory is capped; what a cap pushes out is
// emitted early and counted, never dropped.
package trace
