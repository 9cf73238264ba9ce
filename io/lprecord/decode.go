package lprecord

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// row walks the rows of a batch. The line-protocol decoder resynchronises at the next line
// after a syntax error, so one bad row costs only itself.
type row struct {
	dec  *lineprotocol.Decoder
	line int
}

func newRows(raw []byte) *row { return &row{dec: lineprotocol.NewDecoderWithBytes(raw)} }

func (r *row) next() bool {
	r.line++
	return r.dec.Next()
}

// measurement reads the row's measurement.
func (r *row) measurement() (string, error) {
	m, err := r.dec.Measurement()
	return string(m), err
}

// tags calls fn for every tag; the bytes are only valid during the call.
func (r *row) tags(fn func(k, v []byte)) error {
	for {
		k, v, err := r.dec.NextTag()
		if err != nil || k == nil {
			return err
		}
		fn(k, v)
	}
}

// fields calls fn for every field; fn may refuse one.
func (r *row) fields(fn func(k []byte, v lineprotocol.Value) error) error {
	for {
		k, v, err := r.dec.NextField()
		if err != nil || k == nil {
			return err
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
}

// time reads the row's timestamp (ns); a row without one reads as 0.
func (r *row) time() (int64, error) {
	t, err := r.dec.Time(lineprotocol.Nanosecond, time.Unix(0, 0))
	if err != nil {
		return 0, err
	}
	return t.UnixNano(), nil
}

// DecodeSpans reads a tracing batch: every `pinpoint` row is a Span; other rows are
// dropped and counted.
func DecodeSpans(raw []byte) ([]Span, Drops) {
	var out []Span
	var drops Drops
	r := newRows(raw)
	for r.next() {
		name, err := r.measurement()
		switch {
		case err != nil:
			drops.add(Syntax, r.line, err)
			continue
		case name != SpanRows:
			drops.add(UnknownMeasurement, r.line, fmt.Errorf("%w %q in a tracing batch", errUnknownMeasurement, name))
			continue
		}
		s, reason, err := r.span()
		if err != nil {
			drops.add(reason, r.line, err)
			continue
		}
		out = append(out, s)
	}
	return out, drops
}

// DecodeMetrics reads a metric batch: every pinpoint_jvm, pinpoint_uri,
// pinpoint_datasource and pinpoint_agent row is a Metric; other rows are dropped and
// counted.
func DecodeMetrics(raw []byte) ([]Metric, Drops) {
	var out []Metric
	var drops Drops
	r := newRows(raw)
	for r.next() {
		name, err := r.measurement()
		switch {
		case err != nil:
			drops.add(Syntax, r.line, err)
			continue
		case name != JVM && name != URI && name != DataSource && name != Agent:
			drops.add(UnknownMeasurement, r.line, fmt.Errorf("%w %q in a metric batch", errUnknownMeasurement, name))
			continue
		}
		m, err := r.metric(name)
		if err != nil {
			drops.add(Syntax, r.line, err)
			continue
		}
		out = append(out, m)
	}
	return out, drops
}

func (r *row) metric(name string) (Metric, error) {
	m := Metric{Measurement: name}
	err := r.tags(func(k, v []byte) { m.Tags = append(m.Tags, KV{string(k), string(v)}) })
	if err != nil {
		return m, err
	}
	err = r.fields(func(k []byte, v lineprotocol.Value) error {
		m.Fields = append(m.Fields, fieldOf(string(k), v))
		return nil
	})
	if err != nil {
		return m, err
	}
	m.Time, err = r.time()
	return m, err
}

func fieldOf(key string, v lineprotocol.Value) Field {
	switch v.Kind() {
	case lineprotocol.Int:
		return Field{Key: key, Kind: Int, Int: v.IntV()}
	case lineprotocol.Uint:
		if u := v.UintV(); u <= math.MaxInt64 {
			return Field{Key: key, Kind: Int, Int: int64(u)}
		}
		return Field{Key: key, Kind: Float, Float: float64(v.UintV())}
	case lineprotocol.Float:
		return Field{Key: key, Kind: Float, Float: v.FloatV()}
	case lineprotocol.Bool:
		return Field{Key: key, Kind: String, Str: strconv.FormatBool(v.BoolV())}
	}
	return Field{Key: key, Kind: String, Str: v.StringV()}
}

var (
	errNoTraceID  = errors.New("trace_id missing")
	errSpanType   = errors.New("span_type is not entry, exit or local")
	errZeroSpanID = errors.New("span_id 0 (no span can have it)")
)

// span reads a `pinpoint` row after its measurement; a syntax error or a row the schema
// does not allow is an error with its reason.
func (r *row) span() (Span, Reason, error) {
	var s Span
	if err := r.tags(s.setTag); err != nil {
		return s, Syntax, err
	}
	var have spanFields
	bad := error(nil)
	err := r.fields(func(k []byte, v lineprotocol.Value) error {
		if e := s.setField(string(k), v, &have); e != nil && bad == nil {
			bad = e
		}
		return nil
	})
	if err == nil {
		_, err = r.time() // the row's time is the row offset; start is the span's
	}
	switch {
	case err != nil:
		return s, Syntax, err
	case bad != nil:
		return s, BadSpan, bad
	}
	if err := s.check(have); err != nil {
		return s, BadSpan, err
	}
	return s, 0, nil
}

// spanFields records which required fields a row had.
type spanFields struct{ spanID, parentID, start, duration bool }

func (s *Span) setTag(k, v []byte) {
	val := string(v)
	switch string(k) {
	case "agent_id":
		s.AgentID = val
	case "agent_name":
		s.AgentName = val
	case "endpoint":
		s.Endpoint = val
	case "host":
		s.Host = val
	case "http_method":
		s.HTTPMethod = val
	case "http_status_code":
		s.HTTPStatusCode = val
	case "http_url":
		s.HTTPURL = val
	case "operation":
		s.Operation = val
	case "partial":
		s.Partial = val == "true"
	case "service":
		s.Service = val
	case "service_type":
		s.ServiceType = val
	case "source_type":
		s.SourceType = val
	case "span_type":
		s.Kind = val
	case "status":
		s.Error = val == "error"
	default:
		s.Tags = append(s.Tags, KV{string(k), val})
	}
}

// setField stores one field; the fixed ones must have their schema type.
func (s *Span) setField(k string, v lineprotocol.Value, have *spanFields) error {
	switch k {
	case "span_id":
		have.spanID = true
		return decimal(k, v, &s.SpanID)
	case "parent_id":
		have.parentID = true
		return decimal(k, v, &s.ParentID)
	case "start":
		have.start = true
		return integer(k, v, &s.Start)
	case "duration":
		have.duration = true
		return integer(k, v, &s.Duration)
	}
	if v.Kind() != lineprotocol.String {
		s.Attrs = append(s.Attrs, KV{k, fieldOf(k, v).text()})
		return nil
	}
	str := v.StringV()
	if p := s.fixedString(k); p != nil {
		*p = str
		return nil
	}
	s.Attrs = append(s.Attrs, KV{k, str})
	return nil
}

// fixedString points at the Span's string field of a schema field key, nil for others.
func (s *Span) fixedString(k string) *string {
	switch k {
	case "trace_id":
		return &s.TraceID
	case "resource":
		return &s.Resource
	case "error_type":
		return &s.ErrorType
	case "error_message":
		return &s.ErrorMessage
	case "error_stack":
		return &s.ErrorStack
	case "http_url_raw":
		return &s.HTTPURLRaw
	case "message":
		return &s.Message
	}
	return nil
}

func (s *Span) check(have spanFields) error {
	switch {
	case s.TraceID == "":
		return errNoTraceID
	case !have.spanID || !have.parentID:
		return errors.New("span_id or parent_id missing")
	case !have.start || !have.duration:
		return errors.New("start or duration missing")
	case s.SpanID == 0:
		return errZeroSpanID
	case s.Kind != "entry" && s.Kind != "exit" && s.Kind != "local":
		return fmt.Errorf("%w: %q", errSpanType, s.Kind)
	}
	return nil
}

// decimal reads an id written as a decimal int64 string.
func decimal(k string, v lineprotocol.Value, dst *int64) error {
	if v.Kind() != lineprotocol.String {
		return fmt.Errorf("%s: %s, want a decimal string", k, v.Kind())
	}
	n, err := strconv.ParseInt(v.StringV(), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %q is not a decimal int64", k, v.StringV())
	}
	*dst = n
	return nil
}

func integer(k string, v lineprotocol.Value, dst *int64) error {
	if v.Kind() != lineprotocol.Int {
		return fmt.Errorf("%s: %s, want an integer", k, v.Kind())
	}
	*dst = v.IntV()
	return nil
}

// text is a field's value as a string attribute.
func (f Field) text() string {
	switch f.Kind {
	case Int:
		return strconv.FormatInt(f.Int, 10)
	case Float:
		return strconv.FormatFloat(f.Float, 'g', -1, 64)
	}
	return f.Str
}
