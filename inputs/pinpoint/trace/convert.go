package trace

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/internal/urltemplate"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// Measurement is the measurement of every span point.
const Measurement = span.Measurement

// Annotation keys with a meaning of their own (pinpoint-protocol §5).
const (
	annAPI              = 12
	annAPIMetadata      = 13
	annSQLID            = 20
	annSQL              = 21
	annSQLBindValue     = 24
	annSQLUID           = 25
	annHTTPURL          = 40
	annHTTPStatusCode   = 46
	annHTTPMethod       = 50
	annExceptionChainID = -52
	annCachedArgsFirst  = -40 // cached_args[N]
	annCachedArgsLast   = -30 // cached_args[0]
)

const (
	// Arena bytes per event, measured on typical spans (names, SQL and annotations about
	// 100 bytes an event, the message JSON about 220); a span that needs more grows.
	arenaPerEvent   = 112
	arenaPerMessage = 224
	nsPerMs         = 1_000_000
	usPerMs         = 1_000
)

// converter turns units into spans. One is used by one goroutine at a time (pooled).
type converter struct {
	a       *Assembler
	res     resolver
	s       *span.Span   // the span being built
	scratch []namedValue // annotation fields of the event being built
	types   [8]typeInfo  // the unit's service types seen last, in round robin
	nTypes  int
}

// typeInfo is what an event needs of a service type, its name already cleaned as a tag
// and both words copied into the span's arena.
type typeInfo struct {
	code       int32
	name       span.Str
	sourceType span.Str
	terminal   bool
}

// serviceType looks a code up through a small per-unit cache: a span's events use a few
// service types many times.
func (c *converter) serviceType(code int32) typeInfo {
	for i := range min(c.nTypes, len(c.types)) {
		if c.types[i].code == code {
			return c.types[i]
		}
	}
	st := c.a.opts.Types.Type(code)
	ti := typeInfo{code: code, name: c.s.Add(point.CleanTagValue(st.Name)), sourceType: c.s.Add(st.SourceType()), terminal: st.Terminal}
	c.types[c.nTypes%len(c.types)] = ti
	c.nTypes++
	return ti
}

func (a *Assembler) getConverter() *converter {
	if c, ok := a.convPool.Get().(*converter); ok {
		return c
	}
	return &converter{a: a}
}

func (a *Assembler) putConverter(c *converter) {
	c.s = nil // the span now belongs to the emit callee
	a.convPool.Put(c)
}

// mark and text bracket bytes appended to the span's arena: text is what was written since
// mark, as a string for the converter's own use (it stays valid: the arena only grows).
func (c *converter) mark() int { return c.s.Mark() }

func (c *converter) text(mark int) string { return c.s.String(c.s.Since(mark)) }

// appendArena runs f on the arena and keeps what it appended.
func (c *converter) appendArena(f func([]byte) []byte) span.Str {
	m := c.s.Mark()
	c.s.SetArena(f(c.s.Arena()))
	return c.s.Since(m)
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// convert turns a unit into a span. Names that cannot be resolved are written as
// placeholders; the resolver records them.
func (c *converter) convert(u *unit) *span.Span {
	a := c.a
	rec, _ := a.opts.Meta.Agent(u.sender.AgentKey) // the zero record has a nil Info
	host := a.opts.Hostname
	if h := rec.Info.GetHostname(); h != "" {
		host = h
	}
	c.res.reset(a.opts.Meta, u.sender.AgentKey, javaStyleAPI(&u.sender, rec.Info))
	c.nTypes = 0
	n := len(u.events)
	if u.span != nil {
		n++
	}
	perEvent := arenaPerEvent
	if !a.opts.DelMessage {
		perEvent += arenaPerMessage
	}
	c.s = span.New(n, n*perEvent)
	c.s.TraceID = u.key.traceID()
	c.s.AgentID, c.s.AgentName = point.CleanTagValue(u.sender.AgentID), point.CleanTagValue(u.sender.AgentName)
	c.s.Host, c.s.Service = point.CleanTagValue(host), point.CleanTagValue(u.sender.ApplicationName)
	c.s.Partial = u.partial
	rows := newRowOffsets(u.key)
	if u.span != nil {
		c.entry(u.span, rows)
	}
	for i := range u.events {
		c.event(&u.events[i], rows)
	}
	return c.s
}

// entry converts the Pinpoint span itself.
func (c *converter) entry(ps *pb.PSpan, rows rowOffsets) {
	st := c.serviceType(ps.GetServiceType())
	ann := c.scanAnnotations(ps.GetAnnotation())
	full, short := c.apiName(ps.GetApiId(), &ann, st.name)
	rpc := ps.GetAcceptEvent().GetRpc()
	s := c.s
	s.Events = append(s.Events, span.Event{
		Time: ps.GetStartTime()*nsPerMs + rows.entry(), Kind: span.Entry, Error: ps.GetErr() > 0,
		SpanID: ps.GetSpanId(), ParentID: entryParentID(ps.GetSpanId(), ps.GetParentSpanId()),
		ServiceType: st.name, SourceType: st.sourceType, Operation: s.Add(short),
		HTTPMethod: c.tagValue(ann.method), HTTPStatus: c.tagValue(ann.status),
		Resource: c.field(firstNonEmpty(rpc, full)),
		Start:    ps.GetStartTime() * usPerMs, Duration: int64(ps.GetElapsed()) * usPerMs,
	})
	c.httpURL(firstNonEmpty(rpc, ann.url))
	c.errorFields(ps.GetExceptionInfo(), &ann)
	pi := ps.GetAcceptEvent().GetParentInfo()
	c.attr("remote_addr", ps.GetAcceptEvent().GetRemoteAddr())
	c.attr("parent_application", pi.GetParentApplicationName())
	c.attr("acceptor_host", pi.GetAcceptorHost())
	c.annotationFields(ps.GetAnnotation())
	if !c.a.opts.DelMessage {
		s.Events[len(s.Events)-1].Message = c.appendArena(func(b []byte) []byte { return appendSpanJSON(b, ps) })
	}
}

// event converts one span event.
func (c *converter) event(e *event, rows rowOffsets) {
	ev := e.ev
	st := c.serviceType(ev.GetServiceType())
	ann := c.scanAnnotations(ev.GetAnnotation())
	full, short := c.apiName(ev.GetApiId(), &ann, st.name)
	msgEv := ev.GetNextEvent().GetMessageEvent()
	kind := spanTypeOf(msgEv, st)
	s := c.s
	out := span.Event{
		Time: e.start*nsPerMs + rows.event(e.seq), Kind: kind, Error: ev.GetExceptionInfo() != nil,
		SpanID: e.id, ParentID: e.parent,
		ServiceType: st.name, SourceType: st.sourceType, Operation: s.Add(short),
		HTTPMethod: c.tagValue(ann.method), HTTPStatus: c.tagValue(ann.status),
		Resource: c.field(firstNonEmpty(ann.sql, full)),
		Start:    e.start * usPerMs, Duration: int64(ev.GetEndElapsed()) * usPerMs,
	}
	if kind == span.Exit {
		out.Endpoint = c.tagValue(msgEv.GetDestinationId())
	}
	s.Events = append(s.Events, out)
	c.httpURL(ann.url)
	c.errorFields(ev.GetExceptionInfo(), &ann)
	c.attr("db_sql_bind_values", ann.bind)
	c.annotationFields(ev.GetAnnotation())
	if !c.a.opts.DelMessage {
		s.Events[len(s.Events)-1].Message = c.appendArena(func(b []byte) []byte { return appendEventJSON(b, ev) })
	}
}

func spanTypeOf(me *pb.PMessageEvent, st typeInfo) span.Kind {
	if isCallee(me.GetNextSpanId()) || me.GetDestinationId() != "" || st.terminal {
		return span.Exit
	}
	return span.Local
}

// tagValue copies a tag value into the arena, cleaned (absent when nothing is left).
func (c *converter) tagValue(v string) span.Str {
	if v == "" {
		return span.Str{}
	}
	return c.s.Add(point.CleanTagValue(v))
}

// httpURL sets the http_url tag of the event being built. By default the tag is the URL's
// template (urltemplate.Template: /stock/42 -> /stock/{id}), so that it stays a bounded
// tag, and the URL as it came is the http_url_raw field when it differs; with
// Options.RawHTTPURLTag the tag is the URL as it came and there is no field.
func (c *converter) httpURL(u string) {
	if u == "" {
		return
	}
	e := &c.s.Events[len(c.s.Events)-1]
	if c.a.opts.RawHTTPURLTag {
		e.HTTPURL = c.tagValue(u)
		return
	}
	t := urltemplate.Template(u)
	e.HTTPURL = c.tagValue(t)
	if t != u {
		c.attr(FieldHTTPURLRaw, u)
	}
}

// FieldHTTPURLRaw is the string field with the URL as it came when the http_url tag is its
// template.
const FieldHTTPURLRaw = "http_url_raw"

// field copies a string field value into the arena; invalid UTF-8 (which protobuf
// decoding already refuses) is repaired rather than costing the point.
func (c *converter) field(v string) span.Str {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	return c.s.Add(v)
}

// attr adds a string field to the event being built unless it is empty.
func (c *converter) attr(key, v string) {
	if v != "" {
		c.s.AddAttr(c.s.Add(key), c.field(v))
	}
}

// apiName resolves an API id to its full text (resource) and short form (operation,
// cleaned to be a tag value). An apiId of 0 means the agent put the API string in
// annotation 12 instead; without that either, the service type's name is the best name
// there is. Placeholders ("api:12") are valid tag values as they are.
func (c *converter) apiName(id int32, ann *annotationInfo, serviceType span.Str) (full, short string) {
	if id == 0 {
		if ann.api != "" {
			return ann.api, point.CleanTagValue(shortAPIName(ann.api, c.res.java))
		}
		name := c.s.String(serviceType)
		return name, name
	}
	full, short, ok := c.res.api(id)
	if !ok {
		m := c.mark()
		c.s.SetArena(appendPlaceholder(c.s.Arena(), refAPI, int64(id)))
		full = c.text(m)
		short = full
	}
	return full, short
}

// errorFields writes error_type and error_message from exceptionInfo (int = string id of
// the exception class) and error_stack from the exception chain of annotation -52.
func (c *converter) errorFields(ex *pb.PIntStringValue, ann *annotationInfo) {
	e := &c.s.Events[len(c.s.Events)-1]
	if ex != nil {
		e.ErrorType = c.field(c.stringByID(ex.GetIntValue()))
		e.ErrorMessage = c.field(ex.GetStringValue().GetValue())
	}
	if ann.hasChain {
		e.ErrorStack = c.errorStack(ann.chain)
	}
}

func (c *converter) stringByID(id int32) string {
	if s, ok := c.res.str(id); ok {
		return s
	}
	m := c.mark()
	c.s.SetArena(appendPlaceholder(c.s.Arena(), refString, int64(id)))
	return c.text(m)
}

// errorStack renders an exception chain Java-style, outermost first:
//
//	Class: message
//		at class.method(file:line)
//	Caused by: Class: message
//		...
func (c *converter) errorStack(chainID int64) span.Str {
	chain, ok := c.res.exceptions(chainID)
	if !ok {
		return c.appendArena(func(b []byte) []byte { return appendPlaceholder(b, refException, chainID) })
	}
	return c.appendArena(func(b []byte) []byte {
		for i, e := range chain {
			if i > 0 {
				b = append(b, "\nCaused by: "...)
			}
			b = append(b, e.GetExceptionClassName()...)
			if msg := e.GetExceptionMessage(); msg != "" {
				b = append(b, ": "...)
				b = append(b, msg...)
			}
			for _, f := range e.GetStackTraceElement() {
				b = append(b, "\n\tat "...)
				b = append(b, f.GetClassName()...)
				b = append(b, '.')
				b = append(b, f.GetMethodName()...)
				b = append(b, '(')
				b = append(b, f.GetFileName()...)
				b = append(b, ':')
				b = strconv.AppendInt(b, int64(f.GetLineNumber()), 10)
				b = append(b, ')')
			}
		}
		return b
	})
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// annotationInfo is what the annotations of a span or event say beyond their own fields.
type annotationInfo struct {
	api                 string // 12: the API when apiId is 0
	sql, bind           string // SQL text (20, 25 resolved, or 21) and bind values (20, 25, 24)
	url, method, status string // 40, 50, 46
	chain               int64  // -52: exception chain id
	hasChain            bool
}

// scanAnnotations reads the annotations that feed tags and fixed fields.
func (c *converter) scanAnnotations(as []*pb.PAnnotation) annotationInfo {
	var info annotationInfo
	for _, an := range as {
		v := an.GetValue()
		switch an.GetKey() {
		case annAPI:
			info.api = v.GetStringValue()
		case annSQLID:
			iss := v.GetIntStringStringValue()
			info.sql = c.sqlByID(iss.GetIntValue())
			info.bind = firstNonEmpty(iss.GetStringValue2().GetValue(), info.bind)
		case annSQLUID:
			bss := v.GetBytesStringStringValue()
			info.sql = c.sqlByUID(bss.GetBytesValue())
			info.bind = firstNonEmpty(bss.GetStringValue2().GetValue(), info.bind)
		case annSQL:
			info.sql = firstNonEmpty(info.sql, v.GetStringValue())
		case annSQLBindValue:
			info.bind = firstNonEmpty(info.bind, v.GetStringValue())
		case annHTTPURL:
			info.method, info.url = splitMethod(v.GetStringValue(), info.method)
		case annHTTPMethod:
			info.method = v.GetStringValue()
		case annHTTPStatusCode:
			info.status = c.s.String(c.appendArena(func(b []byte) []byte { return appendAnnotationValue(b, v) }))
		case annExceptionChainID:
			info.chain, info.hasChain = annotationInt(v)
		}
	}
	return info
}

func (c *converter) sqlByID(id int32) string {
	if s, ok := c.res.sql(id); ok {
		return s
	}
	return c.s.String(c.appendArena(func(b []byte) []byte { return appendPlaceholder(b, refSQL, int64(id)) }))
}

func (c *converter) sqlByUID(uid []byte) string {
	if s, ok := c.res.sqlUID(uid); ok {
		return s
	}
	return c.s.String(c.appendArena(func(b []byte) []byte { return appendUIDPlaceholder(b, uid) }))
}

// splitMethod reads "GET http://host/path", the http.url of the Go agent's client
// events, as method and URL; other values are the URL alone. An explicit method
// (annotation 50) wins.
func splitMethod(s, method string) (string, string) {
	sp := strings.IndexByte(s, ' ')
	if sp < 3 || sp > 7 || !isUpperWord(s[:sp]) {
		return method, s
	}
	return firstNonEmpty(method, s[:sp]), s[sp+1:]
}

func isUpperWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// maxAnnotationFields bounds the annotation fields of one point; the annotations beyond
// it go, as "name=value" lines, into the one field annotation_overflow, so a span with
// thousands of annotations costs linear time and a bounded number of fields.
const maxAnnotationFields = 32

// namedValue is one annotation rendered for a field, its value in the span's arena.
type namedValue struct {
	name  string
	value span.Str
}

// annotationFields adds the annotations that have no dedicated tag or field, each named
// after its AnnotationKey (args[0] -> args_0, http.io -> http_io), in name order; the
// values of a key that repeats are joined by newlines.
func (c *converter) annotationFields(as []*pb.PAnnotation) {
	vals := c.scratch[:0]
	for _, an := range as {
		key := an.GetKey()
		if consumedAnnotation(key) {
			continue
		}
		v := an.GetValue()
		var value span.Str
		if key >= annCachedArgsFirst && key <= annCachedArgsLast {
			value = c.appendArena(func(b []byte) []byte { return c.appendCachedArg(b, v) })
		} else {
			value = c.appendArena(func(b []byte) []byte { return appendAnnotationValue(b, v) })
		}
		vals = append(vals, namedValue{c.a.names.field(key), value})
	}
	if len(vals) > 1 {
		slices.SortStableFunc(vals, func(x, y namedValue) int { return strings.Compare(x.name, y.name) })
	}
	fields, overflow := 0, -1
	for i := 0; i < len(vals); {
		j := i + 1
		for j < len(vals) && vals[j].name == vals[i].name {
			j++
		}
		switch {
		case fields < maxAnnotationFields:
			c.addAttr(vals[i].name, c.joinValues(vals[i:j]))
			fields++
		case overflow < 0:
			overflow = c.mark()
			c.appendNamedLines(vals[i:j])
		default:
			c.s.SetArena(append(c.s.Arena(), '\n'))
			c.appendNamedLines(vals[i:j])
		}
		i = j
	}
	if overflow >= 0 {
		c.addAttr("annotation_overflow", c.s.Since(overflow))
	}
	clear(vals) // the pooled scratch must not keep this unit's strings alive
	c.scratch = vals[:0]
}

// addAttr adds an attribute whose value is in the arena already, repaired if it is not
// valid UTF-8.
func (c *converter) addAttr(key string, v span.Str) {
	if s := c.s.String(v); !utf8.ValidString(s) {
		v = c.s.Add(strings.ToValidUTF8(s, "\uFFFD"))
	}
	c.s.AddAttr(c.s.Add(key), v)
}

// joinValues returns the values of one key, one per line.
func (c *converter) joinValues(vals []namedValue) span.Str {
	if len(vals) == 1 {
		return vals[0].value
	}
	return c.appendArena(func(b []byte) []byte {
		for k, v := range vals {
			if k > 0 {
				b = append(b, '\n')
			}
			b = append(b, c.s.String(v.value)...)
		}
		return b
	})
}

// appendNamedLines writes name=value lines for the overflow field.
func (c *converter) appendNamedLines(vals []namedValue) {
	b := c.s.Arena()
	for k, v := range vals {
		if k > 0 {
			b = append(b, '\n')
		}
		b = append(b, v.name...)
		b = append(b, '=')
		b = append(b, c.s.String(v.value)...)
	}
	c.s.SetArena(b)
}

// appendCachedArg resolves a cached_args annotation: its value is a string id.
func (c *converter) appendCachedArg(b []byte, v *pb.PAnnotationValue) []byte {
	id, ok := annotationInt(v)
	if !ok {
		return appendAnnotationValue(b, v)
	}
	if s, found := c.res.str(int32(id)); found {
		return append(b, s...)
	}
	return appendPlaceholder(b, refString, id)
}

func consumedAnnotation(key int32) bool {
	switch key {
	case annAPI, annAPIMetadata, annSQLID, annSQL, annSQLBindValue, annSQLUID,
		annHTTPURL, annHTTPStatusCode, annHTTPMethod, annExceptionChainID:
		return true
	}
	return false
}

// annotationInt reads an integer annotation of any integer type.
func annotationInt(v *pb.PAnnotationValue) (int64, bool) {
	switch x := v.GetField().(type) {
	case *pb.PAnnotationValue_IntValue:
		return int64(x.IntValue), true
	case *pb.PAnnotationValue_LongValue:
		return x.LongValue, true
	case *pb.PAnnotationValue_ShortValue:
		return int64(x.ShortValue), true
	case *pb.PAnnotationValue_ByteValue:
		return int64(x.ByteValue), true
	}
	return 0, false
}

// appendAnnotationValue renders an annotation value as text: scalars as they are,
// composite values as their set parts joined by ", ", bytes in base64.
func appendAnnotationValue(b []byte, v *pb.PAnnotationValue) []byte {
	j := partJoiner{b: b}
	switch x := v.GetField().(type) {
	case *pb.PAnnotationValue_StringValue:
		j.str(x.StringValue, true)
	case *pb.PAnnotationValue_BoolValue:
		j.bool(x.BoolValue)
	case *pb.PAnnotationValue_IntValue:
		j.int(int64(x.IntValue))
	case *pb.PAnnotationValue_LongValue:
		j.int(x.LongValue)
	case *pb.PAnnotationValue_ShortValue:
		j.int(int64(x.ShortValue))
	case *pb.PAnnotationValue_ByteValue:
		j.int(int64(x.ByteValue))
	case *pb.PAnnotationValue_DoubleValue:
		j.sep()
		j.b = strconv.AppendFloat(j.b, x.DoubleValue, 'g', -1, 64)
	case *pb.PAnnotationValue_BinaryValue:
		j.bytes(x.BinaryValue)
	case *pb.PAnnotationValue_IntStringValue:
		j.int(int64(x.IntStringValue.GetIntValue()))
		j.str(x.IntStringValue.GetStringValue().GetValue(), x.IntStringValue.GetStringValue() != nil)
	default:
		appendCompositeValue(&j, v)
	}
	return j.b
}

func appendCompositeValue(j *partJoiner, v *pb.PAnnotationValue) {
	switch x := v.GetField().(type) {
	case *pb.PAnnotationValue_StringStringValue:
		s := x.StringStringValue
		j.str(s.GetStringValue1().GetValue(), s.GetStringValue1() != nil)
		j.str(s.GetStringValue2().GetValue(), s.GetStringValue2() != nil)
	case *pb.PAnnotationValue_IntStringStringValue:
		s := x.IntStringStringValue
		j.int(int64(s.GetIntValue()))
		j.str(s.GetStringValue1().GetValue(), s.GetStringValue1() != nil)
		j.str(s.GetStringValue2().GetValue(), s.GetStringValue2() != nil)
	case *pb.PAnnotationValue_LongIntIntByteByteStringValue:
		s := x.LongIntIntByteByteStringValue
		j.int(s.GetLongValue())
		j.int(int64(s.GetIntValue1()))
		j.int(int64(s.GetIntValue2()))
		j.int(int64(s.GetByteValue1()))
		j.int(int64(s.GetByteValue2()))
		j.str(s.GetStringValue().GetValue(), s.GetStringValue() != nil)
	case *pb.PAnnotationValue_IntBooleanIntBooleanValue:
		s := x.IntBooleanIntBooleanValue
		j.int(int64(s.GetIntValue1()))
		j.bool(s.GetBoolValue1())
		j.int(int64(s.GetIntValue2()))
		j.bool(s.GetBoolValue2())
	case *pb.PAnnotationValue_BytesStringStringValue:
		s := x.BytesStringStringValue
		j.bytes(s.GetBytesValue())
		j.str(s.GetStringValue1().GetValue(), s.GetStringValue1() != nil)
		j.str(s.GetStringValue2().GetValue(), s.GetStringValue2() != nil)
	}
}

// partJoiner appends values separated by ", ".
type partJoiner struct {
	b []byte
	n int
}

func (j *partJoiner) sep() {
	if j.n > 0 {
		j.b = append(j.b, ", "...)
	}
	j.n++
}

func (j *partJoiner) str(s string, set bool) {
	if set {
		j.sep()
		j.b = append(j.b, s...)
	}
}

func (j *partJoiner) int(v int64) {
	j.sep()
	j.b = strconv.AppendInt(j.b, v, 10)
}

func (j *partJoiner) bool(v bool) {
	j.sep()
	j.b = strconv.AppendBool(j.b, v)
}

func (j *partJoiner) bytes(v []byte) {
	j.sep()
	j.b = base64.StdEncoding.AppendEncode(j.b, v)
}
