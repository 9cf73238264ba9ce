package tracestore

// Records: what the store keeps per span, transaction, service-map edge, stat sample and
// agent, with their encodings. The format bytes below are a stored format: change a
// record's layout under a new byte, never under an old one.
const (
	formatSpans  byte = 1
	formatTxn    byte = 2
	formatEdges  byte = 3
	formatSample byte = 4
	formatAgent  byte = 5
	formatText   byte = 6
	formatPart   byte = 7
)

// KV is one attribute: a tag or string field beyond the ones a record names.
type KV struct{ Key, Value string }

// Span kinds, the span_type tag.
const (
	KindEntry = "entry"
	KindExit  = "exit"
	KindLocal = "local"
)

var kinds = [...]string{KindLocal, KindEntry, KindExit}

func kindByte(k string) byte {
	for i, s := range kinds {
		if s == k {
			return byte(i)
		}
	}
	return 0
}

func kindName(b byte) string {
	if int(b) < len(kinds) {
		return kinds[b]
	}
	return KindLocal
}

// Span is one stored span row: a Pinpoint span (entry) or one of its events.
type Span struct {
	TraceID          string
	SpanID, ParentID int64
	Kind             string
	Error            bool
	StartUs          int64
	DurationUs       int64
	// Ordinal is the order apmkit stored the rows in: the events of a Pinpoint span are
	// written in their sequence, which start times (whole milliseconds) cannot tell apart.
	Ordinal                                                             uint64
	App, AgentID, AgentName, Operation, Resource, ServiceType, Endpoint string
	ErrorType, ErrorMessage                                             string
	// Tags are the row's other tags (http_*, source_type, host, global tags...), Attrs its
	// other fields (db_sql_bind_values, remote_addr, annotations such as args_0...).
	Tags, Attrs []KV
}

// Attr returns the value of another tag or field, "" when absent.
func (s *Span) Attr(key string) string {
	if v := attr(s.Tags, key); v != "" {
		return v
	}
	return attr(s.Attrs, key)
}

// Exception is the span's exception as the explorer shows it: "class: message".
func (s *Span) Exception() string { return errorText(s.ErrorType, s.ErrorMessage) }

func attr(kv []KV, key string) string {
	for _, a := range kv {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// encodeSpans writes the spans of one trace that one write stored: one record for a Pinpoint
// span's rows (an entry and its events), as badger's cost is per key more than per byte.
// The trace id is the key's, not the value's.
func encodeSpans(spans []Span) []byte {
	w := writer{b: make([]byte, 0, 256*len(spans))}
	w.byte(formatSpans)
	w.uvarint(uint64(len(spans)))
	for i := range spans {
		s := &spans[i]
		w.varint(s.SpanID)
		w.varint(s.ParentID)
		w.byte(kindByte(s.Kind))
		w.bool(s.Error)
		w.varint(s.StartUs)
		w.varint(s.DurationUs)
		w.uvarint(s.Ordinal)
		for _, v := range []string{s.App, s.AgentID, s.AgentName, s.Operation, s.Resource, s.ServiceType, s.Endpoint, s.ErrorType, s.ErrorMessage} {
			w.string(v)
		}
		w.attrs(s.Tags)
		w.attrs(s.Attrs)
	}
	return w.b
}

// minSpanBytes is the fewest bytes a span takes in encodeSpans (its decoder's bound).
const minSpanBytes = 2 + 1 + 1 + 2 + 1 + 9 + 2

func decodeSpans(b []byte, traceID string) ([]Span, error) {
	r := reader{b: b}
	r.format(formatSpans)
	spans := make([]Span, r.count(minSpanBytes))
	for i := range spans {
		s := &spans[i]
		s.TraceID = traceID
		s.SpanID = r.varint()
		s.ParentID = r.varint()
		s.Kind = kindName(r.byte())
		s.Error = r.bool()
		s.StartUs = r.varint()
		s.DurationUs = r.varint()
		s.Ordinal = r.uvarint()
		for _, p := range []*string{&s.App, &s.AgentID, &s.AgentName, &s.Operation, &s.Resource, &s.ServiceType, &s.Endpoint, &s.ErrorType, &s.ErrorMessage} {
			*p = r.string()
		}
		s.Tags = r.attrs()
		s.Attrs = r.attrs()
	}
	return spans, r.done()
}

// Transaction is one row of the transaction list: a trace's root span, summarised.
type Transaction struct {
	TraceID    string
	StartUs    int64
	DurationUs int64
	Error      bool
	App        string
	AgentID    string
	URL        string
	Method     string
	Status     int
	Exception  string
	// Attrs are the root span's other tags and fields, which attr=key=value matches.
	Attrs []KV
}

func encodeTxn(t *Transaction) []byte {
	w := writer{b: make([]byte, 0, 128)}
	w.byte(formatTxn)
	w.string(t.TraceID)
	w.varint(t.StartUs)
	w.varint(t.DurationUs)
	w.bool(t.Error)
	for _, v := range []string{t.App, t.AgentID, t.URL, t.Method, t.Exception} {
		w.string(v)
	}
	w.varint(int64(t.Status))
	w.attrs(t.Attrs)
	return w.b
}

func decodeTxn(b []byte, t *Transaction) error {
	r := reader{b: b}
	r.format(formatTxn)
	t.TraceID = r.string()
	t.StartUs = r.varint()
	t.DurationUs = r.varint()
	t.Error = r.bool()
	for _, p := range []*string{&t.App, &t.AgentID, &t.URL, &t.Method, &t.Exception} {
		*p = r.string()
	}
	t.Status = int(r.varint())
	t.Attrs = r.attrs()
	return r.done()
}

// histBuckets are Pinpoint's response-time buckets of the server map: up to 1 s, 3 s, 5 s,
// slower, and failed calls (whatever their time).
var histBuckets = [...]string{"1s", "3s", "5s", "Slow", "Error"}

// edgeStat is the calls of one caller to one callee within one minute.
type edgeStat struct {
	From, FromType, To, ToType string
	// Via is the host:port the callee was called on (an app's acceptor host): a caller's
	// exit span to that destination is the same call seen from the other side.
	Via                         string
	Calls, Errors, SumUs, MaxUs uint64
	Hist                        [len(histBuckets)]uint64
}

// add counts one call.
func (e *edgeStat) add(durUs int64, failed bool) {
	d := uint64(max(durUs, 0))
	e.Calls++
	e.SumUs += d
	e.MaxUs = max(e.MaxUs, d)
	switch {
	case failed:
		e.Errors++
		e.Hist[4]++
	case d <= 1_000_000:
		e.Hist[0]++
	case d <= 3_000_000:
		e.Hist[1]++
	case d <= 5_000_000:
		e.Hist[2]++
	default:
		e.Hist[3]++
	}
}

// merge adds o's counts.
func (e *edgeStat) merge(o *edgeStat) {
	e.Calls += o.Calls
	e.Errors += o.Errors
	e.SumUs += o.SumUs
	e.MaxUs = max(e.MaxUs, o.MaxUs)
	for i := range e.Hist {
		e.Hist[i] += o.Hist[i]
	}
}

func encodeEdges(edges []*edgeStat) []byte {
	w := writer{b: make([]byte, 0, 64*len(edges))}
	w.byte(formatEdges)
	w.uvarint(uint64(len(edges)))
	for _, e := range edges {
		for _, v := range []string{e.From, e.FromType, e.To, e.ToType, e.Via} {
			w.string(v)
		}
		for _, v := range []uint64{e.Calls, e.Errors, e.SumUs, e.MaxUs} {
			w.uvarint(v)
		}
		for _, v := range e.Hist {
			w.uvarint(v)
		}
	}
	return w.b
}

func decodeEdges(b []byte) ([]edgeStat, error) {
	r := reader{b: b}
	r.format(formatEdges)
	n := r.count(5 + 4 + len(histBuckets))
	edges := make([]edgeStat, n)
	for i := range edges {
		e := &edges[i]
		for _, p := range []*string{&e.From, &e.FromType, &e.To, &e.ToType, &e.Via} {
			*p = r.string()
		}
		for _, p := range []*uint64{&e.Calls, &e.Errors, &e.SumUs, &e.MaxUs} {
			*p = r.uvarint()
		}
		for j := range e.Hist {
			e.Hist[j] = r.uvarint()
		}
	}
	return edges, r.done()
}

// Sample kinds: a JVM stat sample, or one connection pool of it.
const (
	SampleJVM        = "jvm"
	SampleDataSource = "datasource"
)

// Sample is one stat sample of an agent.
type Sample struct {
	TimeMs int64
	Kind   string
	// Pool names a connection pool (datasource samples): its pool id, database and URL.
	Pool, Database, URL string
	Values              []Value
}

// Value is one number of a sample, named as the line-protocol field.
type Value struct {
	Name  string
	Value float64
}

// Get returns a value of the sample.
func (s *Sample) Get(name string) (float64, bool) {
	for _, v := range s.Values {
		if v.Name == name {
			return v.Value, true
		}
	}
	return 0, false
}

func encodeSample(s *Sample) []byte {
	w := writer{b: make([]byte, 0, 32+24*len(s.Values))}
	w.byte(formatSample)
	w.varint(s.TimeMs)
	for _, v := range []string{s.Kind, s.Pool, s.Database, s.URL} {
		w.string(v)
	}
	w.uvarint(uint64(len(s.Values)))
	for _, v := range s.Values {
		w.string(v.Name)
		w.float(v.Value)
	}
	return w.b
}

func decodeSample(b []byte, s *Sample) error {
	r := reader{b: b}
	r.format(formatSample)
	s.TimeMs = r.varint()
	for _, p := range []*string{&s.Kind, &s.Pool, &s.Database, &s.URL} {
		*p = r.string()
	}
	n := r.count(9)
	s.Values = make([]Value, 0, n)
	for range n {
		s.Values = append(s.Values, Value{Name: r.string(), Value: r.float()})
	}
	return r.done()
}

// Agent is one agent run as the store knows it: from its agent info (start, end) and from
// the spans and stats it sent.
type Agent struct {
	AgentID     string `json:"agent_id"`
	App         string `json:"app"`
	AgentName   string `json:"agent_name,omitempty"`
	Hostname    string `json:"hostname,omitempty"`
	IP          string `json:"ip,omitempty"`
	Version     string `json:"agent_version,omitempty"`
	ServiceType string `json:"service_type,omitempty"`
	VMVersion   string `json:"vm_version,omitempty"`
	PID         int64  `json:"pid,omitempty"`
	StartMs     int64  `json:"start_ms,omitempty"`
	EndMs       int64  `json:"end_ms,omitempty"`
	// LastSeenMs is the time of the newest span or stat sample the store holds of it.
	LastSeenMs int64 `json:"last_seen_ms,omitempty"`
}

func encodeAgent(a *Agent) []byte {
	w := writer{b: make([]byte, 0, 128)}
	w.byte(formatAgent)
	for _, v := range []string{a.AgentID, a.App, a.AgentName, a.Hostname, a.IP, a.Version, a.ServiceType, a.VMVersion} {
		w.string(v)
	}
	for _, v := range []int64{a.PID, a.StartMs, a.EndMs, a.LastSeenMs} {
		w.varint(v)
	}
	return w.b
}

func decodeAgent(b []byte, a *Agent) error {
	r := reader{b: b}
	r.format(formatAgent)
	for _, p := range []*string{&a.AgentID, &a.App, &a.AgentName, &a.Hostname, &a.IP, &a.Version, &a.ServiceType, &a.VMVersion} {
		*p = r.string()
	}
	for _, p := range []*int64{&a.PID, &a.StartMs, &a.EndMs, &a.LastSeenMs} {
		*p = r.varint()
	}
	return r.done()
}

// encodeText is a record holding one string: a failed span's exception, kept per trace
// for the exception search.
func encodeText(s string) []byte {
	w := writer{}
	w.byte(formatText)
	w.string(s)
	return w.b
}

func decodeText(b []byte) (string, error) {
	r := reader{b: b}
	r.format(formatText)
	s := r.string()
	return s, r.done()
}

// partition is one partition's bookkeeping, kept in the meta space.
type partition struct {
	id        uint32
	createdMs int64 // when the store opened it
	lastMs    int64 // when the store last wrote to it: age retention counts from here
	bytes     int64 // keys and values written to it (before compression)
}

func encodePartition(p *partition) []byte {
	w := writer{}
	w.byte(formatPart)
	w.varint(p.createdMs)
	w.varint(p.lastMs)
	w.varint(p.bytes)
	return w.b
}

func decodePartition(b []byte, p *partition) error {
	r := reader{b: b}
	r.format(formatPart)
	p.createdMs = r.varint()
	p.lastMs = r.varint()
	p.bytes = r.varint()
	return r.done()
}
