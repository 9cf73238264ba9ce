package gen

import "github.com/apmkit/apmkit/inputs/pinpoint/pb"

// Tally counts what span messages hold; ppload reports it and the tests and the bench
// harness compare it with what the collector counted.
type Tally struct {
	Spans       int64 `json:"spans"`
	ChildSpans  int64 `json:"child_spans"` // spans with a parent (the callee side of linked transactions)
	ErrorSpans  int64 `json:"error_spans"`
	Chunks      int64 `json:"chunks"` // every PSpanChunk, async ones included
	AsyncChunks int64 `json:"async_chunks"`
	Events      int64 `json:"events"` // span events in spans and chunks
}

// Add counts one message.
func (t *Tally) Add(m *pb.PSpanMessage) {
	if s := m.GetSpan(); s != nil {
		t.Spans++
		t.Events += int64(len(s.GetSpanEvent()))
		if s.GetParentSpanId() != -1 {
			t.ChildSpans++
		}
		if s.GetErr() > 0 {
			t.ErrorSpans++
		}
		return
	}
	if c := m.GetSpanChunk(); c != nil {
		t.Chunks++
		t.Events += int64(len(c.GetSpanEvent()))
		if c.GetLocalAsyncId() != nil {
			t.AsyncChunks++
		}
	}
}

// AddAll counts messages.
func (t *Tally) AddAll(ms []*pb.PSpanMessage) {
	for _, m := range ms {
		t.Add(m)
	}
}

// Merge adds another tally.
func (t *Tally) Merge(o Tally) {
	t.Spans += o.Spans
	t.ChildSpans += o.ChildSpans
	t.ErrorSpans += o.ErrorSpans
	t.Chunks += o.Chunks
	t.AsyncChunks += o.AsyncChunks
	t.Events += o.Events
}
