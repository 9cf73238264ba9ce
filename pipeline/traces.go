package pipeline

import (
	"context"

	"github.com/apmkit/apmkit/internal/splitmix"
	"github.com/apmkit/apmkit/internal/urltemplate"
	"github.com/apmkit/apmkit/span"
)

// reason is why a trace or span was kept or dropped: the `reason` label of the metrics.
type reason uint8

const (
	reasonNoSampler     reason = iota // nothing configured can drop a trace: kept, never waited
	reasonNoTraceID                   // a span without trace id: nothing to decide on, kept
	reasonCloseResource               // the root's resource matched close_resource: dropped
	reasonRare                        // an entry's resource was rare: kept
	reasonError                       // a span of the trace failed (with sampling_rate): kept
	reasonSampler                     // sampling_rate's hash: kept or dropped
	reasonSmartSampler                // the smart sampler's quotas: kept or dropped
	numReasons
)

var reasonNames = [numReasons]string{"no_sampler", "no_trace_id", "close_resource", "rare_resource", "error", "sampler", "smart_sampler"}

func (r reason) String() string { return reasonNames[r] }

// decision is a trace's fate.
type decision struct {
	keep   bool
	reason reason
}

// ProcessSpan takes one span (the caller's from then on) and hands it to Options.Emit if
// it is kept: at once when nothing waits (no sampler or filter, no trace id, or the
// span's trace was already decided), else when its trace is decided. A kept span gets the
// input's and global tags and, with del_message, loses its message fields.
//
// The error is Emit's for this span when it was emitted here; a span that waits for its
// trace's decision returns nil (failures of later emits are counted, and the uploader
// counts what it drops).
func (p *Pipeline) ProcessSpan(ctx context.Context, s *span.Span) error {
	p.finish(s)
	if p.buf == nil {
		p.metrics.countPoints(decision{true, reasonNoSampler}, len(s.Events))
		return p.emit(ctx, s)
	}
	if s.TraceID == "" {
		p.metrics.countPoints(decision{true, reasonNoTraceID}, len(s.Events))
		return p.emit(ctx, s)
	}
	d, waits, decided := p.buf.add(p, s)
	if !waits {
		// Late: the trace was decided before this span came.
		p.metrics.countLate(d, len(s.Events))
	}
	if len(decided) > 0 {
		// Traces the full buffer decided early; the caller's cancellation is not theirs.
		p.release(context.WithoutCancel(ctx), decided)
	}
	if waits || !d.keep {
		return nil
	}
	return p.emit(ctx, s)
}

// finish applies what every kept span gets; done before a span waits, so the buffer holds
// no message fields with del_message.
func (p *Pipeline) finish(s *span.Span) {
	if p.delMsg {
		s.DropMessages()
	}
	s.Tags = p.tags
}

// traceView is what a decision reads of a waiting trace.
type traceView struct {
	id       string
	hash     uint64
	spans    []*span.Span
	hasError bool
}

// root returns the trace's root: the entry span without a parent, else (the root did not
// come within the wait) the entry span that started first; nil when no span has an entry.
func (t *traceView) root() (*span.Span, *span.Event) {
	var bestS *span.Span
	var best *span.Event
	for _, s := range t.spans {
		e := s.Entry()
		if e == nil {
			continue
		}
		if e.ParentID == 0 {
			return s, e
		}
		if best == nil || e.Start < best.Start {
			bestS, best = s, e
		}
	}
	return bestS, best
}

// decide applies the rules to a whole trace, in this order: close_resource on the root
// drops it; a rare resource keeps it; then the smart sampler's quotas when enabled, else an
// error in any span keeps it and sampling_rate's hash decides the rest.
func (p *Pipeline) decide(t *traceView) decision {
	rootSpan, root := t.root()
	service, resource := "", ""
	var duration int64
	if root != nil {
		service, resource, duration = rootSpan.Service, rootSpan.String(root.Resource), root.Duration
	} else if len(t.spans) > 0 {
		service = t.spans[0].Service
	}
	if root != nil && p.closedResource(service, resource) {
		return decision{false, reasonCloseResource}
	}
	rare := false
	if p.rare != nil {
		for _, s := range t.spans { // every entry is a sighting, also once one was rare
			if e := s.Entry(); e != nil && p.rare.firstSeen(s.Service, urltemplate.Template(s.String(e.Resource))) {
				rare = true
			}
		}
	}
	if p.smart != nil {
		keep := p.smart.decide(service, resource, t.hasError, duration, rare)
		if rare {
			return decision{true, reasonRare}
		}
		return decision{keep, reasonSmartSampler}
	}
	switch {
	case rare:
		return decision{true, reasonRare}
	case t.hasError:
		return decision{true, reasonError}
	case p.rate != nil:
		return decision{p.rate.keep(t.hash), reasonSampler}
	}
	return decision{true, reasonSampler}
}

func (p *Pipeline) closedResource(service, resource string) bool {
	for _, svc := range []string{service, "*"} {
		for _, re := range p.closed[svc] {
			if re.MatchString(resource) {
				return true
			}
		}
	}
	return false
}

// traceHash is the trace decision hash: FNV-1a 64 of the trace_id as apmkit writes it
// (agentId^agentStartTime^sequence), then splitmix64's finalizer. FNV-1a alone barely
// moves its top bits when only the last characters change, and an agent's transactions
// differ only in their sequence; the finalizer spreads every input bit over all 64. The
// function is fixed: every replica, every restart and every version decides alike.
func traceHash(traceID string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(traceID); i++ {
		h ^= uint64(traceID[i])
		h *= prime
	}
	return splitmix.Mix64(h)
}

// KeptByRate reports whether sampling_rate keeps a trace by its hash alone: the top 53 bits
// of the trace hash, as a fraction of 2^53, are below the rate. (A trace with an error is
// kept whatever it says.) Every replica, and anything else that knows the trace id, can
// compute it.
func KeptByRate(traceID string, rate float64) bool {
	return newSampleRate(rate).keep(traceHash(traceID))
}

// sampleRate keeps a trace iff the top 53 bits of its hash, as a fraction of 2^53, are
// below the rate.
type sampleRate struct{ below uint64 }

func newSampleRate(rate float64) *sampleRate {
	return &sampleRate{below: uint64(rate * (1 << 53))}
}

func (r *sampleRate) keep(hash uint64) bool { return hash>>11 < r.below }
