package pipeline

import (
	"hash/fnv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/apmkit/apmkit/point"
)

// group is the points of one trace in one Feed. The Pinpoint input feeds one Pinpoint span
// (its entry span and events) or one chunk per call, so a group is one of those.
type group struct {
	traceID  string
	service  string
	entry    *point.Point // nil for a chunk that arrives on its own
	hasError bool
	pts      []*point.Point
}

// Decision reasons, the `reason` label of the metrics.
const (
	reasonCloseResource = "close_resource"
	reasonSampler       = "sampler"
	reasonSmartSampler  = "smart_sampler"
	reasonRare          = "rare_resource"
	reasonError         = "error"
	reasonRemembered    = "remembered"
	reasonNoTraceID     = "no_trace_id"
)

func (p *Pipeline) processTraces(pts []*point.Point) []*point.Point {
	kept := pts[:0:0]
	for _, g := range groupByTrace(pts) {
		keep, reason := p.decide(g)
		p.metrics.count(keep, reason, len(g.pts))
		if keep {
			kept = append(kept, g.pts...)
		}
	}
	if p.delMsg {
		for _, pt := range kept {
			pt.DelField(fieldMessage)
		}
	}
	return kept
}

// groupByTrace splits points by trace_id, keeping their order.
func groupByTrace(pts []*point.Point) []*group {
	var groups []*group
	index := map[string]*group{}
	for _, pt := range pts {
		id := stringField(pt, fieldTraceID)
		g, ok := index[id]
		if !ok {
			g = &group{traceID: id}
			index[id] = g
			groups = append(groups, g)
		}
		g.pts = append(g.pts, pt)
		if typ, _ := pt.Tag(tagSpanType); typ == spanTypeEntry && g.entry == nil {
			g.entry = pt
		}
		if st, _ := pt.Tag(tagStatus); st == statusError {
			g.hasError = true
		}
	}
	for _, g := range groups {
		first := g.pts[0]
		if g.entry != nil {
			first = g.entry
		}
		g.service, _ = first.Tag(tagService)
	}
	return groups
}

// decide says whether a group is kept, and why.
func (p *Pipeline) decide(g *group) (bool, string) {
	if g.traceID == "" {
		return true, reasonNoTraceID // not a trace we can reason about: never lose it
	}
	spanKey := g.traceID + "\x00" + g.service
	if keep, ok := p.memory.get(spanKey); ok {
		return keep, reasonRemembered
	}
	if g.entry != nil && p.closedResource(g.service, stringField(g.entry, fieldResource)) {
		p.memory.set(spanKey, false)
		return false, reasonCloseResource
	}
	if g.entry != nil && p.rare != nil && p.rare.firstSeen(g.service, stringField(g.entry, fieldResource)) {
		p.memory.set(spanKey, true)
		return true, reasonRare
	}
	if p.smart != nil {
		return p.smart.decide(g), reasonSmartSampler
	}
	if g.hasError {
		p.memory.set(spanKey, true)
		return true, reasonError
	}
	if p.rate != nil {
		return keepByHash(g.traceID, *p.rate), reasonSampler
	}
	return true, reasonSampler
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

// keepByHash keeps a trace iff FNV-1a 64 of its trace_id, scaled to [0, 1), is below
// rate. The hash is fixed, so every span of a trace and every apmkit replica agree.
func keepByHash(traceID string, rate float64) bool {
	if rate >= 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(traceID))
	return float64(h.Sum64()>>11)/(1<<53) < rate
}

func stringField(pt *point.Point, key string) string {
	if f, ok := pt.Field(key); ok && f.Kind() == point.KindString {
		return f.StringValue()
	}
	return ""
}

// traceMemory remembers per-span decisions that a later chunk of the same Pinpoint span
// must follow (dropped by close_resource, kept for an error or a rare resource). It is
// bounded in entries and time. (golang-lru's expirable LRU would do the expiry too, but it
// starts a goroutine that can never be stopped, one per pipeline.)
type traceMemory struct {
	now func() time.Time
	lru *lru.Cache[string, remembered]
}

type remembered struct {
	keep bool
	at   time.Time
}

const (
	traceMemoryEntries = 100_000
	traceMemoryTTL     = 10 * time.Minute
)

func newTraceMemory(now func() time.Time) *traceMemory {
	c, _ := lru.New[string, remembered](traceMemoryEntries)
	return &traceMemory{now: now, lru: c}
}

func (m *traceMemory) get(key string) (bool, bool) {
	r, ok := m.lru.Get(key)
	if !ok || m.now().Sub(r.at) >= traceMemoryTTL {
		return false, false
	}
	return r.keep, true
}

func (m *traceMemory) set(key string, keep bool) {
	m.lru.Add(key, remembered{keep: keep, at: m.now()})
}
