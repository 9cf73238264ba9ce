// Package gen builds the spans ppload sends: Pinpoint transactions shaped like a Java web
// request (Tomcat entry, Spring methods, MySQL, Redis, an HTTP call to a second
// application), encoded the way the Java agent puts them on the wire.
package gen

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// ChunkSize is the Java agent's span event buffer: each time it fills, its 20 events are
// flushed as a PSpanChunk and the span itself later carries only the rest.
const ChunkSize = 20

// Options shape the generated transactions.
type Options struct {
	Events     int     // events per span, at least MinEvents
	ChunkFrac  float64 // share of spans of more than ChunkSize events sent as sync chunks + span
	AsyncFrac  float64 // share of root spans that spawn async work (an async chunk)
	ErrorFrac  float64 // share of root spans that fail (err=1, a query with exceptionInfo)
	LinkedFrac float64 // share of root spans that call the API application (a child span)
}

// Validate names the first option out of range.
func (o Options) Validate() error {
	var errs []error
	if o.Events < MinEvents {
		errs = append(errs, fmt.Errorf("events: %d, at least %d needed (Tomcat/Spring frame, service, query, Redis or HTTP call)", o.Events, MinEvents))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"chunk-frac", o.ChunkFrac}, {"async-frac", o.AsyncFrac}, {"error-frac", o.ErrorFrac}, {"linked-frac", o.LinkedFrac}} {
		if f.v < 0 || f.v > 1 {
			errs = append(errs, fmt.Errorf("%s: %v must be within 0..1", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// Agent is one emulated agent run: what its call headers say.
type Agent struct {
	ID, Name  string
	Role      Role
	StartTime int64 // epoch ms
}

// Endpoint is the host:port the agent's Tomcat listens on.
func (a Agent) Endpoint() string {
	if a.Role == API {
		return "api.shop:8080"
	}
	return "web.shop:8080"
}

// Transaction is one generated transaction's messages, in the order an agent sends them:
// sync chunks, then the span, then async chunks (async work ends after its span).
type Transaction struct {
	ID     *pb.PTransactionId
	Own    []*pb.PSpanMessage // sent by the generator's agent
	Callee []*pb.PSpanMessage // sent by the callee's agent; empty unless the call was linked
}

// Generator makes the transactions of one agent. It is not safe for concurrent use: each
// agent has its own, so runs are reproducible per seed.
type Generator struct {
	opts Options
	self Agent
	rng  *rand.Rand
	seq  int64
}

// New returns a generator for agent self. The same seed gives the same transactions (ids
// included), so callers give each agent its own seed.
func New(opts Options, self Agent, seed uint64) (*Generator, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	const stream = 0x9e3779b97f4a7c15 // any fixed odd constant: PCG's second word
	return &Generator{opts: opts, self: self, rng: rand.New(rand.NewPCG(seed, stream))}, nil
}

// spanPlan is a span before encoding; times are epoch ms (startMs) and ms from the start.
type spanPlan struct {
	id, parentID int64
	startMs      int64
	elapsed      int64
	evs          []event
	failed       bool
	agent        Agent
	caller       *Agent // set on callee spans: their parentInfo
}

// Next returns a new transaction that ended at nowMs (epoch ms). When callee is not nil, a
// LinkedFrac share of transactions call it, and its span goes in Transaction.Callee.
func (g *Generator) Next(nowMs int64, callee *Agent) Transaction {
	g.seq++
	tx := Transaction{ID: &pb.PTransactionId{AgentId: g.self.ID, AgentStartTime: g.self.StartTime, Sequence: g.seq}}
	root := &spanPlan{id: g.spanID(), parentID: -1, evs: layout(g.opts.Events), agent: g.self}
	var child *spanPlan
	httpMs := int64(0)
	if callee != nil && g.chance(g.opts.LinkedFrac) {
		child = &spanPlan{id: g.spanID(), parentID: root.id, evs: layout(g.opts.Events), agent: *callee, caller: &g.self}
		child.elapsed = g.schedule(child.evs, 0)
		root.evs[posHTTPCall].kind = kindHTTP
		root.evs[posHTTPCall].nextSpanID = child.id
		httpMs = child.elapsed + 2 // the callee's span plus the network both ways
	}
	async := g.chance(g.opts.AsyncFrac)
	if async {
		root.evs[posAsyncSpawn].asyncID = 1 // Java numbers a transaction's async ids from 1
	}
	if g.chance(g.opts.ErrorFrac) {
		root.failed = true
		root.evs[posFailedSQL].failed = true
	}
	root.elapsed = g.schedule(root.evs, httpMs)
	root.startMs = nowMs - root.elapsed
	tx.Own = g.spanMessages(tx.ID, root)
	if async {
		tx.Own = append(tx.Own, g.asyncChunk(tx.ID, root))
	}
	if child != nil {
		child.startMs = root.startMs + root.evs[posHTTPCall].start + 1
		tx.Callee = g.spanMessages(tx.ID, child)
	}
	return tx
}

// spanMessages encodes a span; a ChunkFrac share of spans longer than ChunkSize go out as
// the Java agent sends them: full buffers of 20 events as chunks, the rest in the span.
func (g *Generator) spanMessages(txid *pb.PTransactionId, sp *spanPlan) []*pb.PSpanMessage {
	var out []*pb.PSpanMessage
	rest, seq := sp.evs, int32(0)
	if len(rest) > ChunkSize && g.chance(g.opts.ChunkFrac) {
		for len(rest) > ChunkSize {
			part := rest[:ChunkSize]
			out = append(out, chunkMessage(&pb.PSpanChunk{
				Version: 1, TransactionId: cloneID(txid), SpanId: sp.id, EndPoint: sp.agent.Endpoint(),
				ApplicationServiceType: stTomcat, KeyTime: sp.startMs + part[0].start,
				SpanEvent: encode(part, seq, part[0].start),
			}))
			rest, seq = rest[ChunkSize:], seq+ChunkSize
		}
	}
	span := entrySpan(txid, sp)
	span.SpanEvent = encode(rest, seq, 0)
	return append(out, &pb.PSpanMessage{Field: &pb.PSpanMessage_Span{Span: span}})
}

// entrySpan is the Tomcat span without its events.
func entrySpan(txid *pb.PTransactionId, sp *spanPlan) *pb.PSpan {
	status, errFlag := int32(200), int32(0)
	if sp.failed {
		status, errFlag = 500, 1
	}
	return &pb.PSpan{
		Version: 1, TransactionId: cloneID(txid), SpanId: sp.id, ParentSpanId: sp.parentID,
		StartTime: sp.startMs, Elapsed: int32(sp.elapsed), ApiId: apiServletProcess,
		ServiceType: stTomcat, ApplicationServiceType: stTomcat, Err: errFlag,
		AcceptEvent: acceptEvent(sp),
		Annotation:  []*pb.PAnnotation{intAnn(annHTTPStatus, status)},
	}
}

// acceptEvent is what Tomcat records of the request: a callee span also names its caller.
func acceptEvent(sp *spanPlan) *pb.PAcceptEvent {
	if sp.caller == nil {
		return &pb.PAcceptEvent{Rpc: "/orders/42", EndPoint: sp.agent.Endpoint(), RemoteAddr: "203.0.113.7"}
	}
	return &pb.PAcceptEvent{
		Rpc: "/stock/42", EndPoint: sp.agent.Endpoint(), RemoteAddr: "10.0.0.7",
		ParentInfo: &pb.PParentInfo{
			ParentApplicationName: sp.caller.Role.App(), ParentApplicationType: stTomcat,
			AcceptorHost: sp.agent.Endpoint(),
		},
	}
}

// asyncChunk is the work the spawning event submitted, as the chunk {asyncId 1, sequence 1}
// that arrives after the span; it starts 1 ms after the spawning event did.
func (g *Generator) asyncChunk(txid *pb.PTransactionId, root *spanPlan) *pb.PSpanMessage {
	evs := asyncLayout()
	g.schedule(evs, 0)
	startMs := root.startMs + root.evs[posAsyncSpawn].start + 1
	return chunkMessage(&pb.PSpanChunk{
		Version: 1, TransactionId: cloneID(txid), SpanId: root.id, EndPoint: root.agent.Endpoint(),
		ApplicationServiceType: stTomcat, KeyTime: startMs + evs[0].start,
		LocalAsyncId: &pb.PLocalAsyncId{AsyncId: root.evs[posAsyncSpawn].asyncID, Sequence: 1},
		SpanEvent:    encode(evs, 0, evs[0].start),
	})
}

func chunkMessage(c *pb.PSpanChunk) *pb.PSpanMessage {
	return &pb.PSpanMessage{Field: &pb.PSpanMessage_SpanChunk{SpanChunk: c}}
}

// cloneID gives every message its own transaction id, so no message shares a sub-message
// with one another goroutine is marshalling.
func cloneID(id *pb.PTransactionId) *pb.PTransactionId {
	return &pb.PTransactionId{AgentId: id.GetAgentId(), AgentStartTime: id.GetAgentStartTime(), Sequence: id.GetSequence()}
}

// spanID is a random 64-bit span id; 0 and -1 mean "none" on the wire, so never those.
func (g *Generator) spanID() int64 {
	for {
		if id := int64(g.rng.Uint64()); id != 0 && id != -1 {
			return id
		}
	}
}

func (g *Generator) chance(p float64) bool { return p > 0 && g.rng.Float64() < p }
