package span

import (
	"strconv"

	"github.com/apmkit/apmkit/point"
)

// Line protocol, written straight from a span's arena: no point, no map, no validation pass
// (a span's keys are fixed, its tag values cleaned and its strings valid UTF-8 where they
// are made). The output is byte for byte what line-protocol/v2's encoder writes for the
// same point, which TestLinesMatchLineProtocolV2 and FuzzLines check: tag keys, tag values
// and field keys escape comma, equals sign and space; string field values escape backslash,
// double quote, newline, carriage return and tab.

// tag is one tag of an event in key order, before the span's extra tags are merged in.
type tag struct{ key, value string }

// builtinTags returns event i's own tags in key order; absent ones have an empty value.
func (s *Span) builtinTags(e *Event, out *[14]tag) {
	partial := ""
	if s.Partial {
		partial = "true"
	}
	status := "ok"
	if e.Error {
		status = "error"
	}
	*out = [14]tag{
		{"agent_id", s.AgentID},
		{"agent_name", s.AgentName},
		{"endpoint", s.String(e.Endpoint)},
		{"host", s.Host},
		{"http_method", s.String(e.HTTPMethod)},
		{"http_status_code", s.String(e.HTTPStatus)},
		{"http_url", s.String(e.HTTPURL)},
		{"operation", s.String(e.Operation)},
		{"partial", partial},
		{"service", s.Service},
		{"service_type", s.String(e.ServiceType)},
		{"source_type", s.String(e.SourceType)},
		{"span_type", e.Kind.String()},
		{"status", status},
	}
}

// tags returns event i's tags in key order, in buf when they fit: its own merged with the
// span's extra tags (an own tag wins over an extra tag of the same key).
func (s *Span) tags(i int, buf []tag) []tag {
	var own [14]tag
	s.builtinTags(&s.Events[i], &own)
	out, extra := buf[:0], s.Tags
	for _, t := range own {
		for len(extra) > 0 && extra[0].Key < t.key {
			out = append(out, tag{extra[0].Key, extra[0].Value})
			extra = extra[1:]
		}
		if len(extra) > 0 && extra[0].Key == t.key {
			if t.value == "" {
				t.value = extra[0].Value
			}
			extra = extra[1:]
		}
		if t.value != "" {
			out = append(out, t)
		}
	}
	for _, t := range extra {
		out = append(out, tag{t.Key, t.Value})
	}
	return out
}

// AppendLine appends event i as one line, newline included.
func (s *Span) AppendLine(dst []byte, i int) []byte {
	e := &s.Events[i]
	dst = append(dst, Measurement...)
	var buf [24]tag
	for _, t := range s.tags(i, buf[:]) {
		dst = append(dst, ',')
		dst = appendKey(dst, t.key)
		dst = append(dst, '=')
		dst = appendKey(dst, t.value)
	}
	dst = append(dst, " trace_id="...)
	dst = appendQuoted(dst, s.TraceID)
	dst = append(dst, `,span_id="`...)
	dst = strconv.AppendInt(dst, e.SpanID, 10)
	dst = append(dst, `",parent_id="`...)
	dst = strconv.AppendInt(dst, e.ParentID, 10)
	dst = append(dst, '"')
	dst = s.appendStringField(dst, "resource", e.Resource)
	dst = append(dst, ",start="...)
	dst = strconv.AppendInt(dst, e.Start, 10)
	dst = append(dst, "i,duration="...)
	dst = strconv.AppendInt(dst, e.Duration, 10)
	dst = append(dst, 'i')
	dst = s.appendStringField(dst, "error_type", e.ErrorType)
	dst = s.appendStringField(dst, "error_message", e.ErrorMessage)
	dst = s.appendStringField(dst, "error_stack", e.ErrorStack)
	for _, a := range s.Attrs(i) {
		dst = append(dst, ',')
		dst = appendKey(dst, s.String(a.Key))
		dst = append(dst, '=')
		dst = appendQuoted(dst, s.String(a.Value))
	}
	dst = s.appendStringField(dst, "message", e.Message)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, e.Time, 10)
	return append(dst, '\n')
}

// AppendLines appends every event of the span.
func (s *Span) AppendLines(dst []byte) []byte {
	for i := range s.Events {
		dst = s.AppendLine(dst, i)
	}
	return dst
}

// appendStringField appends ,key="value" unless the value is empty (absent).
func (s *Span) appendStringField(dst []byte, key string, v Str) []byte {
	if v.Empty() {
		return dst
	}
	dst = append(dst, ',')
	dst = append(dst, key...)
	dst = append(dst, '=')
	return appendQuoted(dst, s.String(v))
}

// appendKey escapes a tag key, tag value or field key.
func appendKey(dst []byte, v string) []byte {
	start := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case ',', '=', ' ':
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		}
	}
	return append(dst, v[start:]...)
}

// appendQuoted writes a string field value in double quotes.
func appendQuoted(dst []byte, v string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(v); i++ {
		var esc byte
		switch v[i] {
		case '\\', '"':
			esc = v[i]
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\t':
			esc = 't'
		default:
			continue
		}
		dst = append(dst, v[start:i]...)
		dst = append(dst, '\\', esc)
		start = i + 1
	}
	dst = append(dst, v[start:]...)
	return append(dst, '"')
}

// Points returns the span's events as generic points, the same tags and fields in the same
// order (for tests, and for code that only knows points).
func (s *Span) Points() []*point.Point {
	pts := make([]*point.Point, len(s.Events))
	for i := range s.Events {
		e := &s.Events[i]
		p := &point.Point{Name: Measurement, Time: e.Time}
		for _, t := range s.tags(i, nil) {
			p.Tags = append(p.Tags, point.Tag{Key: t.key, Value: t.value})
		}
		add := func(k string, v Str) {
			if !v.Empty() {
				p.Fields = append(p.Fields, point.String(k, s.String(v)))
			}
		}
		p.Fields = append(p.Fields,
			point.String("trace_id", s.TraceID),
			point.String("span_id", strconv.FormatInt(e.SpanID, 10)),
			point.String("parent_id", strconv.FormatInt(e.ParentID, 10)))
		add("resource", e.Resource)
		p.Fields = append(p.Fields, point.Int("start", e.Start), point.Int("duration", e.Duration))
		add("error_type", e.ErrorType)
		add("error_message", e.ErrorMessage)
		add("error_stack", e.ErrorStack)
		for _, a := range s.Attrs(i) {
			add(s.String(a.Key), a.Value)
		}
		add("message", e.Message)
		pts[i] = p
	}
	return pts
}
