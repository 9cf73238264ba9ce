// Package lprecord reads apmkit's own line protocol back into records: a Span for each
// `pinpoint` row (tracing) and a Metric for each pinpoint_* row (metric), as
// docs/SCHEMA.md defines them. Outputs that speak another format (otlp) decode a batch
// when they send it, because the memory queue and the disk spill hold line protocol for
// every output alike. A batch read back from disk may be damaged or come from another
// apmkit version, so a row that cannot be read is a counted drop with a reason, never a
// panic and never the loss of the rows around it.
package lprecord

import (
	"errors"
	"fmt"
	"strings"
)

// KV is a tag, or a string field, by key.
type KV struct{ Key, Value string }

// Span is one `pinpoint` row.
type Span struct {
	TraceID          string // the Pinpoint transaction id, agentId^agentStartTime^sequence
	SpanID, ParentID int64  // ParentID 0: a root span
	Kind             string // span_type: entry, exit or local
	Start, Duration  int64  // µs
	Error, Partial   bool   // status=error, partial=true

	Service, AgentID, AgentName, Host                      string
	Operation, Resource, ServiceType, SourceType, Endpoint string
	HTTPMethod, HTTPStatusCode, HTTPURL, HTTPURLRaw        string
	ErrorType, ErrorMessage, ErrorStack, Message           string

	Tags  []KV // tags beyond the schema's (the input's and global tags), in key order
	Attrs []KV // string fields beyond the fixed ones (annotations, remote_addr...), in row order
}

// FieldKind is a metric field's type.
type FieldKind uint8

// Field kinds; line protocol's unsigned integers read as Int when they fit, booleans as
// String ("true", "false").
const (
	Int FieldKind = iota
	Float
	String
)

// Field is one field of a metric row.
type Field struct {
	Key   string
	Kind  FieldKind
	Int   int64
	Float float64
	Str   string
}

// Metric is one pinpoint_* row.
type Metric struct {
	Measurement string
	Time        int64 // ns since the epoch
	Tags        []KV  // in key order
	Fields      []Field
}

// Tag returns the tag's value, "" when absent.
func (m *Metric) Tag(key string) string {
	for _, t := range m.Tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

// Field returns the field, false when absent.
func (m *Metric) Field(key string) (Field, bool) {
	for _, f := range m.Fields {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// Measurements of the metric category, as docs/SCHEMA.md lists them.
const (
	JVM        = "pinpoint_jvm"
	URI        = "pinpoint_uri"
	DataSource = "pinpoint_datasource"
	Agent      = "pinpoint_agent"
	SpanRows   = "pinpoint"
)

// Reason says why a row was not read.
type Reason int

// Reasons.
const (
	Syntax             Reason = iota // not line protocol
	UnknownMeasurement               // a measurement the category does not hold
	BadSpan                          // a pinpoint row without valid ids, times or span_type
	NumReasons
)

func (r Reason) String() string {
	switch r {
	case Syntax:
		return "syntax"
	case UnknownMeasurement:
		return "unknown_measurement"
	case BadSpan:
		return "bad_span"
	}
	return "unknown"
}

// Drops counts the rows that were not read, by reason, and keeps the first cause.
type Drops struct {
	Counts [NumReasons]int
	First  error
}

func (d *Drops) add(r Reason, line int, err error) {
	d.Counts[r]++
	if d.First == nil {
		d.First = fmt.Errorf("row %d: %s: %w", line, r, err)
	}
}

// Total is the number of rows dropped.
func (d *Drops) Total() int {
	n := 0
	for _, c := range d.Counts {
		n += c
	}
	return n
}

// Err summarises the drops for a log line ("2 rows not read (syntax 1, bad_span 1); first:
// line 3: ..."), nil when none.
func (d *Drops) Err() error {
	if d.Total() == 0 {
		return nil
	}
	var parts []string
	for r, c := range d.Counts {
		if c > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", Reason(r), c))
		}
	}
	return fmt.Errorf("%d rows not read (%s); first: %w", d.Total(), strings.Join(parts, ", "), d.First)
}

var errUnknownMeasurement = errors.New("unknown measurement")
