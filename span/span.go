// Package span holds the typed value apmkit's tracing path carries from an input to the
// outputs: one Span per Pinpoint span, its entry span and its events, decided on whole by
// the pipeline and encoded by each output straight into its own buffer.
//
// A Span is built to cost the garbage collector as little as possible. Its strings live in
// one arena (a []byte) and events refer to them as Str offsets, so an Event and an Attr
// hold no pointers: a span's events are one allocation the collector never scans and no
// write barrier is paid per field. A span is a handful of allocations whatever its number
// of events. Spans are not safe for concurrent modification; once handed on (to the
// pipeline, then the outputs) they are only read.
package span

import (
	"unsafe"

	"github.com/apmkit/apmkit/point"
)

// Measurement is the measurement of every span point (docs: "What apmkit writes").
const Measurement = "pinpoint"

// Kind is an event's span_type.
type Kind uint8

// Kinds, as DataKit's tracing schema names them.
const (
	Local Kind = iota // a method or block inside the service
	Entry             // the Pinpoint span itself: a request into the service
	Exit              // a call out of the service (RPC, database, cache, queue)
)

func (k Kind) String() string {
	switch k {
	case Entry:
		return "entry"
	case Exit:
		return "exit"
	}
	return "local"
}

// Str is a string in its Span's arena: offset and length. The zero Str is "".
type Str struct{ off, n uint32 }

// Empty reports whether the string is "".
func (s Str) Empty() bool { return s.n == 0 }

// Event is one span point: the entry span or one event. Every string is in the span's
// arena; an empty Str means the tag or field is absent.
type Event struct {
	Time     int64 // the row's timestamp, ns: inside the start millisecond
	Start    int64 // µs since the epoch
	Duration int64 // µs
	SpanID   int64
	ParentID int64 // 0: a root span
	Kind     Kind
	Error    bool // status=error

	// Tags.
	Operation, ServiceType, SourceType, Endpoint Str
	HTTPMethod, HTTPStatus, HTTPURL              Str

	// Fields, in the order they are written: trace_id, span_id, parent_id, resource,
	// start, duration, the error fields, the attributes, message.
	Resource                            Str
	ErrorType, ErrorMessage, ErrorStack Str
	Message                             Str // the original Pinpoint message as JSON

	attrFrom, attrTo uint32 // this event's attributes: Span.attrs[attrFrom:attrTo]
}

// Attr is a string field beyond the fixed ones: remote_addr, db_sql_bind_values, an
// annotation (args_0, http_io, ...).
type Attr struct{ Key, Value Str }

// Span is one Pinpoint span as rebuilt: its events share a trace, an agent and the tags
// that name them.
type Span struct {
	TraceID   string // agentId^agentStartTime^sequence
	Service   string // the agent's applicationName (tag service)
	AgentID   string
	AgentName string
	Host      string
	Partial   bool // rebuilt from chunks whose span never came: tag partial=true

	// Tags are added to every event (input and global tags), sorted by key; an event's own
	// tag of the same key wins. The pipeline sets them; they are shared, never modified.
	Tags []point.Tag

	Events []Event
	attrs  []Attr
	arena  []byte
}

// New returns an empty span with room for events and arena bytes.
func New(events, arenaBytes int) *Span {
	return &Span{Events: make([]Event, 0, events), arena: make([]byte, 0, arenaBytes)}
}

// String returns the text of x. It stays valid while the span lives: the arena only grows
// by appending, and a grown arena leaves the old bytes to the strings that use them.
func (s *Span) String(x Str) string {
	if x.n == 0 {
		return ""
	}
	return unsafe.String(&s.arena[x.off], int(x.n))
}

// Add copies v into the arena.
func (s *Span) Add(v string) Str {
	m := s.Mark()
	s.arena = append(s.arena, v...)
	return s.Since(m)
}

// Mark and Since bracket bytes appended to the arena in place (AppendArena): the Str of
// what was appended since the mark.
func (s *Span) Mark() int { return len(s.arena) }

// Since returns the Str of the arena bytes written after mark.
func (s *Span) Since(mark int) Str {
	return Str{off: uint32(mark), n: uint32(len(s.arena) - mark)}
}

// Arena returns the arena for appending in place: the caller appends and gives the result
// back with SetArena, between Mark and Since.
func (s *Span) Arena() []byte { return s.arena }

// SetArena stores the arena after in-place appends.
func (s *Span) SetArena(b []byte) { s.arena = b }

// ArenaLen is the bytes the span's strings take (memory accounting).
func (s *Span) ArenaLen() int { return len(s.arena) }

// AddAttr adds an attribute to the event being built, the last of Events; an empty value
// is absent, as every empty string field is.
func (s *Span) AddAttr(key, value Str) {
	if value.Empty() {
		return
	}
	e := &s.Events[len(s.Events)-1]
	if e.attrTo == 0 {
		e.attrFrom = uint32(len(s.attrs))
	}
	s.attrs = append(s.attrs, Attr{Key: key, Value: value})
	e.attrTo = uint32(len(s.attrs))
}

// Attrs returns event i's attributes, in the order they are written.
func (s *Span) Attrs(i int) []Attr {
	e := &s.Events[i]
	return s.attrs[e.attrFrom:e.attrTo]
}

// Entry returns the entry event, nil when the span never came (a partial span).
func (s *Span) Entry() *Event {
	if len(s.Events) > 0 && s.Events[0].Kind == Entry {
		return &s.Events[0]
	}
	return nil
}

// HasError reports whether any event failed.
func (s *Span) HasError() bool {
	for i := range s.Events {
		if s.Events[i].Error {
			return true
		}
	}
	return false
}

// DropMessages removes the message field from every event (del_message).
func (s *Span) DropMessages() {
	for i := range s.Events {
		s.Events[i].Message = Str{}
	}
}

// Size estimates the memory the span holds, for byte budgets.
func (s *Span) Size() int {
	const eventSize, attrSize = int(unsafe.Sizeof(Event{})), int(unsafe.Sizeof(Attr{}))
	return 128 + len(s.TraceID) + cap(s.arena) + cap(s.Events)*eventSize + cap(s.attrs)*attrSize
}
