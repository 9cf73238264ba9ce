package tracestore

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/dgraph-io/badger/v4"

	"github.com/apmkit/apmkit/point"
)

// Measurements the store keeps; others (pinpoint_uri, other inputs') are ignored.
const (
	measSpan       = "pinpoint"
	measJVM        = "pinpoint_jvm"
	measDataSource = "pinpoint_datasource"
	measAgent      = "pinpoint_agent"
)

// Write stores a batch of line protocol: the rows apmkit's outputs receive, so the
// pipeline's decisions (sampling, filters) apply to the explorer as to every output. A
// batch that does not parse is refused whole (ErrMalformed) and nothing is written while
// the disk is full (ErrDiskFull). Writing the same batch again changes nothing; a span in
// two batches is stored twice and read once (Trace).
func (s *Store) Write(raw []byte) error {
	pts, err := point.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if s.db() == nil || !s.space.room(false) {
		s.counters.refused.Add(1)
		return ErrDiskFull
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	nowMs := s.opts.Now().UnixMilli()
	p := s.current(nowMs)
	b := newBatchBuilder(s, p.id, batchHash(raw))
	for _, pt := range pts {
		b.add(pt)
	}
	b.finish()
	p.lastMs = nowMs
	p.bytes += b.bytes
	b.set(metaKey(p.id), encodePartition(p))
	if err := b.flush(); err != nil {
		return err
	}
	b.count()
	return nil
}

// batchBuilder turns one Write's points into badger entries.
type batchBuilder struct {
	s       *Store
	pid     uint32
	batch   int64 // batchHash of the written bytes, in the keys of its span and edge records
	entries []entry
	bytes   int64
	traces  map[string][]Span               // the batch's spans by trace, in order
	order   []string                        // trace ids in the order they came
	edges   map[int64]map[edgeKey]*edgeStat // by minute
	seen    map[string]*Agent               // agents' newest times in this batch

	spans, txns, samples, agents int64
}

type entry struct{ k, v []byte }

type edgeKey struct{ from, fromType, to, toType, via string }

func newBatchBuilder(s *Store, pid uint32, batch int64) *batchBuilder {
	return &batchBuilder{s: s, pid: pid, batch: batch, traces: map[string][]Span{}, edges: map[int64]map[edgeKey]*edgeStat{}, seen: map[string]*Agent{}}
}

// batchHash identifies a batch by its bytes (FNV-1a 64).
func batchHash(raw []byte) int64 {
	h := fnv.New64a()
	h.Write(raw)
	return int64(h.Sum64())
}

func (b *batchBuilder) set(k, v []byte) {
	b.entries = append(b.entries, entry{k, v})
	b.bytes += int64(len(k) + len(v))
}

func (b *batchBuilder) add(pt *point.Point) {
	switch pt.Name {
	case measSpan:
		b.addSpan(pt)
	case measJVM, measDataSource:
		b.addSample(pt)
	case measAgent:
		b.addAgent(pt)
	}
}

func (b *batchBuilder) addSpan(pt *point.Point) {
	s, ok := spanOf(pt, b.s.ordinal.Add(1))
	if !ok {
		b.s.counters.skipped.Add(1)
		return
	}
	if _, ok := b.traces[s.TraceID]; !ok {
		b.order = append(b.order, s.TraceID)
	}
	b.traces[s.TraceID] = append(b.traces[s.TraceID], s)
	b.spans++
	if s.Kind == KindEntry && s.ParentID == 0 {
		b.addTransaction(&s)
	} else if s.Error {
		b.set(newKey(b.pid, kindExc).str(s.TraceID).i64(s.SpanID).b, encodeText(s.Exception()))
	}
	b.countEdge(&s)
	b.see(s.AgentID, s.App, s.AgentName, (s.StartUs+s.DurationUs)/1000)
}

// addTransaction indexes a root span: by start time, application and, failed, among the
// failures. Each index holds the whole summary, so a search reads one range. (A search by
// trace id reads the trace's spans.)
func (b *batchBuilder) addTransaction(s *Span) {
	t := transactionOf(s)
	v := encodeTxn(&t)
	b.set(newKey(b.pid, kindTxn).i64(t.StartUs).str(t.TraceID).b, v)
	if len(t.App) <= maxIDLen {
		b.set(newKey(b.pid, kindApp).str(t.App).i64(t.StartUs).str(t.TraceID).b, v)
	}
	if t.Error {
		b.set(newKey(b.pid, kindErr).i64(t.StartUs).str(t.TraceID).b, v)
	}
	b.txns++
}

// Node types of the service map.
const (
	NodeUser     = "user"
	NodeApp      = "app"
	NodeDatabase = "database"
	NodeCache    = "cache"
	NodeQueue    = "queue"
	NodeRemote   = "remote"
	// UserNode is the name of the node entry traffic comes from.
	UserNode = "USER"
)

// countEdge counts a span in the service map: an entry span is a call into its app (from
// the caller's app, or from USER for a root or a caller not traced), an exit span with a
// destination a call out of it.
func (b *batchBuilder) countEdge(s *Span) {
	var k edgeKey
	switch s.Kind {
	case KindEntry:
		k = edgeKey{from: UserNode, fromType: NodeUser, to: s.App, toType: NodeApp}
		if parent := s.Attr("parent_application"); s.ParentID != 0 && parent != "" {
			k.from, k.fromType, k.via = parent, NodeApp, s.Attr("acceptor_host")
		}
	case KindExit:
		if s.Endpoint == "" {
			return
		}
		k = edgeKey{from: s.App, fromType: NodeApp, to: s.Endpoint, toType: destinationType(s.Attr("source_type"))}
	default:
		return
	}
	minute := floorDiv(s.StartUs, 60_000_000)
	m := b.edges[minute]
	if m == nil {
		m = map[edgeKey]*edgeStat{}
		b.edges[minute] = m
	}
	e := m[k]
	if e == nil {
		e = &edgeStat{From: k.from, FromType: k.fromType, To: k.to, ToType: k.toType, Via: k.via}
		m[k] = e
	}
	e.add(s.DurationUs, s.Error)
}

// destinationType classes an exit span's callee by its source_type tag.
func destinationType(sourceType string) string {
	switch sourceType {
	case "db":
		return NodeDatabase
	case "cache":
		return NodeCache
	case "message_queue":
		return NodeQueue
	}
	return NodeRemote
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func (b *batchBuilder) addSample(pt *point.Point) {
	agent, _ := pt.Tag("agent_id")
	if agent == "" || len(agent) > maxIDLen {
		return
	}
	s := Sample{TimeMs: floorDiv(pt.Time, 1e6), Kind: SampleJVM}
	k := newKey(b.pid, kindStat).str(agent).i64(s.TimeMs)
	if pt.Name == measDataSource {
		s.Kind = SampleDataSource
		s.Pool, _ = pt.Tag("pool_id")
		s.Database, _ = pt.Tag("database_name")
		s.URL, _ = pt.Tag("url")
		k.byte(1).str(truncate(s.Pool, maxIDLen))
	} else {
		k.byte(0)
	}
	for _, f := range pt.Fields {
		if v, ok := number(f); ok {
			s.Values = append(s.Values, Value{Name: f.Key, Value: v})
		}
	}
	b.set(k.b, encodeSample(&s))
	b.samples++
	app, _ := pt.Tag("service")
	name, _ := pt.Tag("agent_name")
	b.see(agent, app, name, s.TimeMs)
}

func number(f point.Field) (float64, bool) {
	switch f.Kind() {
	case point.KindInt:
		return float64(f.IntValue()), true
	case point.KindUint:
		return float64(f.UintValue()), true
	case point.KindFloat:
		return f.FloatValue(), true
	}
	return 0, false
}

// addAgent keeps an agent run's info; its end is a record of its own beside the start.
func (b *batchBuilder) addAgent(pt *point.Point) {
	a := Agent{}
	tags := map[string]*string{"agent_id": &a.AgentID, "service": &a.App, "agent_name": &a.AgentName, "hostname": &a.Hostname,
		"ip": &a.IP, "agentVersion": &a.Version, "service_type": &a.ServiceType, "vm_version": &a.VMVersion}
	for _, t := range pt.Tags {
		if p := tags[t.Key]; p != nil {
			*p = t.Value
		}
	}
	a.PID, a.StartMs, a.EndMs = intField(pt, "pid"), intField(pt, "start_time"), intField(pt, "end_timestamp")
	if a.AgentID == "" || len(a.AgentID) > maxIDLen {
		return
	}
	end := byte(0)
	if a.EndMs > 0 {
		end = 1
	}
	b.set(newKey(b.pid, kindInfo).str(a.AgentID).i64(a.StartMs).byte(end).b, encodeAgent(&a))
	b.agents++
}

func intField(pt *point.Point, key string) int64 {
	f, ok := pt.Field(key)
	if !ok || f.Kind() != point.KindInt {
		return 0
	}
	return f.IntValue()
}

// see notes an agent's newest data time of the batch.
func (b *batchBuilder) see(agent, app, name string, ms int64) {
	if agent == "" || len(agent) > maxIDLen {
		return
	}
	a := b.seen[agent]
	if a == nil {
		a = &Agent{AgentID: agent, App: app, AgentName: name}
		b.seen[agent] = a
	}
	a.LastSeenMs = max(a.LastSeenMs, ms)
}

// finish adds the batch's spans (one record per trace), its service-map counts (one record
// per minute: queries sum them) and the agents' last-seen times that moved (the store
// remembers what it wrote to the current partition).
func (b *batchBuilder) finish() {
	for _, id := range b.order {
		spans := b.traces[id]
		b.set(newKey(b.pid, kindSpan).str(id).i64(b.batch).b, encodeSpans(spans))
	}
	for minute, m := range b.edges {
		edges := make([]*edgeStat, 0, len(m))
		for _, e := range m {
			edges = append(edges, e)
		}
		b.set(newKey(b.pid, kindEdge).i64(minute).i64(b.batch).b, encodeEdges(edges))
	}
	const maxSeen = 10_000 // agents remembered; beyond, the map starts over (more writes, same answers)
	for id, a := range b.seen {
		if b.s.seen[id] >= a.LastSeenMs {
			continue
		}
		if len(b.s.seen) >= maxSeen {
			clear(b.s.seen)
		}
		b.s.seen[id] = a.LastSeenMs
		b.set(newKey(b.pid, kindSeen).str(id).b, encodeAgent(a))
	}
}

// flush writes the entries in one badger write batch.
func (b *batchBuilder) flush() error {
	wb := b.s.db().NewWriteBatch()
	defer wb.Cancel()
	for _, e := range b.entries {
		if err := wb.SetEntry(badger.NewEntry(e.k, e.v)); err != nil {
			return fmt.Errorf("tracestore: write: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("tracestore: write: %w", err)
	}
	return nil
}

func (b *batchBuilder) count() {
	c := &b.s.counters
	c.spans.Add(b.spans)
	c.transactions.Add(b.txns)
	c.samples.Add(b.samples)
	c.agents.Add(b.agents)
}

// spanOf reads a span row. Tags and fields the Span names go to its fields; the other tags
// to Tags, the other fields to Attrs, except the original
// Pinpoint message, which the explorer does not show and which is most of a row's size.
func spanOf(pt *point.Point, ordinal uint64) (Span, bool) {
	s := Span{Kind: KindLocal, Ordinal: ordinal}
	for _, t := range pt.Tags {
		switch t.Key {
		case "service":
			s.App = t.Value
		case "agent_id":
			s.AgentID = t.Value
		case "agent_name":
			s.AgentName = t.Value
		case "operation":
			s.Operation = t.Value
		case "service_type":
			s.ServiceType = t.Value
		case "endpoint":
			s.Endpoint = t.Value
		case "span_type":
			s.Kind = t.Value
		case "status":
			s.Error = t.Value == "error"
		default:
			s.Tags = append(s.Tags, KV{t.Key, t.Value})
		}
	}
	var spanID, parentID string
	for _, f := range pt.Fields {
		switch f.Key {
		case "trace_id":
			s.TraceID = f.StringValue()
		case "span_id":
			spanID = f.StringValue()
		case "parent_id":
			parentID = f.StringValue()
		case "resource":
			s.Resource = f.StringValue()
		case "start":
			s.StartUs = f.IntValue()
		case "duration":
			s.DurationUs = f.IntValue()
		case "error_type":
			s.ErrorType = f.StringValue()
		case "error_message":
			s.ErrorMessage = f.StringValue()
		case "message":
		default:
			s.Attrs = append(s.Attrs, KV{f.Key, fieldText(f)})
		}
	}
	var err1, err2 error
	s.SpanID, err1 = strconv.ParseInt(spanID, 10, 64)
	if parentID != "" {
		s.ParentID, err2 = strconv.ParseInt(parentID, 10, 64)
	}
	ok := s.TraceID != "" && len(s.TraceID) <= maxIDLen && err1 == nil && err2 == nil
	return s, ok
}

func fieldText(f point.Field) string {
	if f.Kind() == point.KindString {
		return f.StringValue()
	}
	return fmt.Sprint(f.Value())
}

// transactionOf summarises a root span. Its attributes are what attr=key=value matches:
// the span's own, plus the tags the summary has no column for.
func transactionOf(s *Span) Transaction {
	t := Transaction{
		TraceID: s.TraceID, StartUs: s.StartUs, DurationUs: s.DurationUs, Error: s.Error,
		App: s.App, AgentID: s.AgentID, URL: s.Resource, Method: s.Attr("http_method"),
		Exception: s.Exception(),
	}
	if t.URL == "" {
		t.URL = s.Attr("http_url")
	}
	t.Status, _ = strconv.Atoi(s.Attr("http_status_code"))
	for _, a := range slices.Concat(s.Tags, s.Attrs) {
		if a.Key != "error_stack" {
			t.Attrs = append(t.Attrs, a)
		}
	}
	for _, a := range []KV{{"service", s.App}, {"agent_id", s.AgentID}, {"agent_name", s.AgentName}, {"operation", s.Operation}, {"service_type", s.ServiceType}} {
		if a.Value != "" {
			t.Attrs = append(t.Attrs, a)
		}
	}
	return t
}

// errorText is an exception as the explorer shows it: "class: message".
func errorText(typ, msg string) string {
	switch {
	case typ == "":
		return msg
	case msg == "":
		return typ
	}
	return typ + ": " + msg
}
