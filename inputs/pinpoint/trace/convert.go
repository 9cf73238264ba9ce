package trace

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// Measurement is the measurement of every span point (docs/OUTPUT-SCHEMA.md).
const Measurement = "pinpoint"

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
	// Slab sizes per point, measured on typical spans (about 10 tags and 8 fields a point,
	// 35 bytes of ids and 220 of message JSON); the slabs are shared by a unit's points,
	// so only the average matters, and a unit that needs more grows.
	tagsPerPoint    = 10
	fieldsPerPoint  = 8
	arenaPerPoint   = 48
	arenaPerMessage = 224
	nsPerMs         = 1_000_000
	usPerMs         = 1_000
)

// converter turns units into points. One is used by one goroutine at a time (pooled).
type converter struct {
	a       *Assembler
	res     resolver
	b       batch
	scratch []namedValue // annotation fields of the point being built
	types   [8]typeInfo  // the unit's service types seen last, in round robin
	nTypes  int
}

// typeInfo is what a point needs of a service type, its name already cleaned as a tag.
type typeInfo struct {
	code       int32
	name       string
	sourceType string
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
	ti := typeInfo{code: code, name: point.CleanTagValue(st.Name), sourceType: st.SourceType(), terminal: st.Terminal}
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
	c.b = batch{} // the points now belong to the emit callee
	a.convPool.Put(c)
}

// batch holds the points of one unit. Points, tags, fields and strings are carved from a
// few slabs, so a span costs a handful of allocations however many events it has. Each
// point's tags and fields are appended straight into the slabs and then capped at their
// length, so the slabs are packed with no slot unused, and a later append by a pipeline
// stage reallocates instead of writing over the next point.
type batch struct {
	points []point.Point
	ptrs   []*point.Point
	tags   []point.Tag   // the unused rest of the tag slab
	fields []point.Field // the unused rest of the field slab
	arena  arena
}

func (b *batch) reset(n, arenaBytes int) {
	b.points = make([]point.Point, n)
	b.ptrs = make([]*point.Point, 0, n)
	b.tags = make([]point.Tag, 0, n*tagsPerPoint)
	b.fields = make([]point.Field, 0, n*fieldsPerPoint)
	b.arena = arena{b: make([]byte, 0, arenaBytes)}
}

// next starts a point at offsetNs inside its start millisecond (rowtime.go); finish must
// follow before the next one starts.
func (b *batch) next(startMs, offsetNs int64) *point.Point {
	p := &b.points[len(b.ptrs)]
	p.Name = Measurement
	p.Time = startMs*nsPerMs + offsetNs
	p.Tags, p.Fields = b.tags, b.fields
	b.ptrs = append(b.ptrs, p)
	return p
}

// finish moves the slabs past what the point used and caps its slices at their length.
// A point that outgrew the slab got its own array from append; the slab is then untouched.
func (b *batch) finish(p *point.Point) {
	if n := len(p.Tags); n > 0 && unsafe.SliceData(p.Tags) == unsafe.SliceData(b.tags) {
		b.tags = b.tags[n:n]
	}
	if n := len(p.Fields); n > 0 && unsafe.SliceData(p.Fields) == unsafe.SliceData(b.fields) {
		b.fields = b.fields[n:n]
	}
	p.Tags = p.Tags[:len(p.Tags):len(p.Tags)]
	p.Fields = p.Fields[:len(p.Fields):len(p.Fields)]
}

// arena is an append-only buffer the unit's strings (ids, messages, rendered values) are
// cut from without copying. Bytes once handed out as a string are never written again:
// appends go past them, and a grown buffer leaves the old one to the strings using it.
type arena struct{ b []byte }

func (ar *arena) mark() int { return len(ar.b) }

func (ar *arena) since(mark int) string {
	if len(ar.b) == mark {
		return ""
	}
	return unsafe.String(&ar.b[mark], len(ar.b)-mark)
}

func (ar *arena) int(v int64) string {
	m := ar.mark()
	ar.b = strconv.AppendInt(ar.b, v, 10)
	return ar.since(m)
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// common is what every point of a unit shares.
type common struct {
	tags    tagSet
	traceID string
	rows    rowOffsets
}

// convert turns a unit into points. Names that cannot be resolved are written as
// placeholders; the resolver records them.
func (c *converter) convert(u *unit) []*point.Point {
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
	perPoint := arenaPerPoint
	if !a.opts.DelMessage {
		perPoint += arenaPerMessage
	}
	c.b.reset(n, n*perPoint)
	com := common{traceID: u.key.traceID(), rows: newRowOffsets(u.key), tags: tagSet{
		agentID: point.CleanTagValue(u.sender.AgentID), agentName: point.CleanTagValue(u.sender.AgentName),
		host: point.CleanTagValue(host), service: point.CleanTagValue(u.sender.ApplicationName),
	}}
	if u.partial {
		com.tags.partial = "true"
	}
	if u.span != nil {
		c.entry(u.span, &com)
	}
	for i := range u.events {
		c.event(&u.events[i], &com)
	}
	return c.b.ptrs
}

// entry converts the Pinpoint span itself.
func (c *converter) entry(s *pb.PSpan, com *common) {
	b := &c.b
	p := b.next(s.GetStartTime(), com.rows.entry())
	st := c.serviceType(s.GetServiceType())
	ann := c.scanAnnotations(s.GetAnnotation())
	full, short := c.apiName(s.GetApiId(), &ann, st.name)
	rpc := s.GetAcceptEvent().GetRpc()

	t := com.tags
	t.spanType, t.serviceType, t.sourceType = "entry", st.name, st.sourceType
	t.status = statusOf(s.GetErr() > 0)
	t.operation = short
	t.httpURL, t.httpMethod, t.httpStatus = firstNonEmpty(rpc, ann.url), ann.method, ann.status
	t.appendTo(p)

	c.idFields(p, com.traceID, b.arena.int(s.GetSpanId()), entryParentID(s.GetSpanId(), s.GetParentSpanId()))
	addString(p, "resource", firstNonEmpty(rpc, full))
	c.timeFields(p, s.GetStartTime(), s.GetElapsed())
	c.errorFields(p, s.GetExceptionInfo(), &ann)
	pi := s.GetAcceptEvent().GetParentInfo()
	addString(p, "remote_addr", s.GetAcceptEvent().GetRemoteAddr())
	addString(p, "parent_application", pi.GetParentApplicationName())
	addString(p, "acceptor_host", pi.GetAcceptorHost())
	c.annotationFields(p, s.GetAnnotation())
	if !c.a.opts.DelMessage {
		m := b.arena.mark()
		b.arena.b = appendSpanJSON(b.arena.b, s)
		p.Fields = append(p.Fields, point.String("message", b.arena.since(m)))
	}
	b.finish(p)
}

// event converts one span event.
func (c *converter) event(e *event, com *common) {
	b := &c.b
	ev := e.ev
	p := b.next(e.start, com.rows.event(e.seq))
	st := c.serviceType(ev.GetServiceType())
	ann := c.scanAnnotations(ev.GetAnnotation())
	full, short := c.apiName(ev.GetApiId(), &ann, st.name)
	msgEv := ev.GetNextEvent().GetMessageEvent()

	t := com.tags
	t.serviceType, t.sourceType = st.name, st.sourceType
	t.spanType = spanTypeOf(msgEv, st)
	if t.spanType == "exit" {
		t.endpoint = msgEv.GetDestinationId()
	}
	t.status = statusOf(ev.GetExceptionInfo() != nil)
	t.operation = short
	t.httpURL, t.httpMethod, t.httpStatus = ann.url, ann.method, ann.status
	t.appendTo(p)

	c.idFields(p, com.traceID, b.arena.int(e.id), b.arena.int(e.parent))
	addString(p, "resource", firstNonEmpty(ann.sql, full))
	c.timeFields(p, e.start, ev.GetEndElapsed())
	c.errorFields(p, ev.GetExceptionInfo(), &ann)
	addString(p, "db_sql_bind_values", ann.bind)
	c.annotationFields(p, ev.GetAnnotation())
	if !c.a.opts.DelMessage {
		m := b.arena.mark()
		b.arena.b = appendEventJSON(b.arena.b, ev)
		p.Fields = append(p.Fields, point.String("message", b.arena.since(m)))
	}
	b.finish(p)
}

func spanTypeOf(me *pb.PMessageEvent, st typeInfo) string {
	if isCallee(me.GetNextSpanId()) || me.GetDestinationId() != "" || st.terminal {
		return "exit"
	}
	return "local"
}

func statusOf(failed bool) string {
	if failed {
		return "error"
	}
	return "ok"
}

func (c *converter) idFields(p *point.Point, traceID, spanID, parentID string) {
	p.Fields = append(p.Fields,
		point.String("trace_id", traceID),
		point.String("span_id", spanID),
		point.String("parent_id", parentID))
}

func (c *converter) timeFields(p *point.Point, startMs int64, elapsedMs int32) {
	p.Fields = append(p.Fields,
		point.Int("start", startMs*usPerMs),
		point.Int("duration", int64(elapsedMs)*usPerMs))
}

// apiName resolves an API id to its full text (resource) and short form (operation,
// cleaned to be a tag value). An apiId of 0 means the agent put the API string in
// annotation 12 instead; without that either, the service type's name is the best name
// there is. Placeholders ("api:12") are valid tag values as they are.
func (c *converter) apiName(id int32, ann *annotationInfo, serviceType string) (full, short string) {
	if id == 0 {
		if ann.api != "" {
			return ann.api, point.CleanTagValue(shortAPIName(ann.api, c.res.java))
		}
		return serviceType, serviceType
	}
	full, short, ok := c.res.api(id)
	if !ok {
		ar := &c.b.arena
		m := ar.mark()
		ar.b = appendPlaceholder(ar.b, refAPI, int64(id))
		full = ar.since(m)
		short = full
	}
	return full, short
}

// errorFields writes error_type and error_message from exceptionInfo (int = string id of
// the exception class) and error_stack from the exception chain of annotation -52.
func (c *converter) errorFields(p *point.Point, ex *pb.PIntStringValue, ann *annotationInfo) {
	if ex != nil {
		addString(p, "error_type", c.stringByID(ex.GetIntValue()))
		addString(p, "error_message", ex.GetStringValue().GetValue())
	}
	if ann.hasChain {
		addString(p, "error_stack", c.errorStack(ann.chain))
	}
}

func (c *converter) stringByID(id int32) string {
	if s, ok := c.res.str(id); ok {
		return s
	}
	ar := &c.b.arena
	m := ar.mark()
	ar.b = appendPlaceholder(ar.b, refString, int64(id))
	return ar.since(m)
}

// errorStack renders an exception chain Java-style, outermost first:
//
//	Class: message
//		at class.method(file:line)
//	Caused by: Class: message
//		...
func (c *converter) errorStack(chainID int64) string {
	ar := &c.b.arena
	m := ar.mark()
	chain, ok := c.res.exceptions(chainID)
	if !ok {
		ar.b = appendPlaceholder(ar.b, refException, chainID)
		return ar.since(m)
	}
	for i, e := range chain {
		if i > 0 {
			ar.b = append(ar.b, "\nCaused by: "...)
		}
		ar.b = append(ar.b, e.GetExceptionClassName()...)
		if msg := e.GetExceptionMessage(); msg != "" {
			ar.b = append(ar.b, ": "...)
			ar.b = append(ar.b, msg...)
		}
		for _, f := range e.GetStackTraceElement() {
			ar.b = append(ar.b, "\n\tat "...)
			ar.b = append(ar.b, f.GetClassName()...)
			ar.b = append(ar.b, '.')
			ar.b = append(ar.b, f.GetMethodName()...)
			ar.b = append(ar.b, '(')
			ar.b = append(ar.b, f.GetFileName()...)
			ar.b = append(ar.b, ':')
			ar.b = strconv.AppendInt(ar.b, int64(f.GetLineNumber()), 10)
			ar.b = append(ar.b, ')')
		}
	}
	return ar.since(m)
}

// addString adds a string field unless it is empty; invalid UTF-8 (which protobuf
// decoding already refuses) is repaired rather than costing the point.
func addString(p *point.Point, key, v string) {
	if v == "" {
		return
	}
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	p.Fields = append(p.Fields, point.String(key, v))
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// tagSet holds a point's tags; appendTo adds them in sorted key order, as point.Point
// requires, without a search per tag. Values that repeat are cleaned where they are made
// (once per unit, per service type, per API); the fixed words (span_type, status,
// source_type, partial) need no cleaning; only endpoint and the http tags pay for
// point.CleanTagValue on every point.
type tagSet struct {
	agentID, agentName, endpoint, host, httpMethod, httpStatus, httpURL, operation string
	partial, service, serviceType, sourceType, spanType, status                    string
}

func (t *tagSet) appendTo(p *point.Point) {
	addTag(p, "agent_id", t.agentID, false)
	addTag(p, "agent_name", t.agentName, false)
	addTag(p, "endpoint", t.endpoint, true)
	addTag(p, "host", t.host, false)
	addTag(p, "http_method", t.httpMethod, true)
	addTag(p, "http_status_code", t.httpStatus, true)
	addTag(p, "http_url", t.httpURL, true)
	addTag(p, "operation", t.operation, false)
	addTag(p, "partial", t.partial, false)
	addTag(p, "service", t.service, false)
	addTag(p, "service_type", t.serviceType, false)
	addTag(p, "source_type", t.sourceType, false)
	addTag(p, "span_type", t.spanType, false)
	addTag(p, "status", t.status, false)
}

func addTag(p *point.Point, k, v string, clean bool) {
	if v == "" {
		return
	}
	if clean {
		if v = point.CleanTagValue(v); v == "" {
			return
		}
	}
	p.Tags = append(p.Tags, point.Tag{Key: k, Value: v})
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
			m := c.b.arena.mark()
			c.b.arena.b = appendAnnotationValue(c.b.arena.b, v)
			info.status = c.b.arena.since(m)
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
	ar := &c.b.arena
	m := ar.mark()
	ar.b = appendPlaceholder(ar.b, refSQL, int64(id))
	return ar.since(m)
}

func (c *converter) sqlByUID(uid []byte) string {
	if s, ok := c.res.sqlUID(uid); ok {
		return s
	}
	ar := &c.b.arena
	m := ar.mark()
	ar.b = appendUIDPlaceholder(ar.b, uid)
	return ar.since(m)
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

// namedValue is one annotation rendered for a field.
type namedValue struct{ name, value string }

// annotationFields adds the annotations that have no dedicated tag or field, each named
// after its AnnotationKey (args[0] -> args_0, http.io -> http_io), in name order; the
// values of a key that repeats are joined by newlines.
func (c *converter) annotationFields(p *point.Point, as []*pb.PAnnotation) {
	vals := c.scratch[:0]
	for _, an := range as {
		key := an.GetKey()
		if consumedAnnotation(key) {
			continue
		}
		ar := &c.b.arena
		m := ar.mark()
		if key >= annCachedArgsFirst && key <= annCachedArgsLast {
			c.appendCachedArg(an.GetValue())
		} else {
			ar.b = appendAnnotationValue(ar.b, an.GetValue())
		}
		vals = append(vals, namedValue{c.a.names.field(key), ar.since(m)})
	}
	if len(vals) > 1 {
		slices.SortStableFunc(vals, func(x, y namedValue) int { return strings.Compare(x.name, y.name) })
	}
	ar := &c.b.arena
	fields, overflow := 0, -1
	for i := 0; i < len(vals); {
		j := i + 1
		for j < len(vals) && vals[j].name == vals[i].name {
			j++
		}
		switch {
		case fields < maxAnnotationFields:
			addString(p, vals[i].name, c.joinValues(vals[i:j]))
			fields++
		case overflow < 0:
			overflow = ar.mark()
			c.appendNamedLines(vals[i:j])
		default:
			ar.b = append(ar.b, '\n')
			c.appendNamedLines(vals[i:j])
		}
		i = j
	}
	if overflow >= 0 {
		addString(p, "annotation_overflow", ar.since(overflow))
	}
	clear(vals) // the pooled scratch must not keep this unit's strings alive
	c.scratch = vals[:0]
}

// joinValues returns the values of one key, one per line.
func (c *converter) joinValues(vals []namedValue) string {
	if len(vals) == 1 {
		return vals[0].value
	}
	ar := &c.b.arena
	m := ar.mark()
	for k, v := range vals {
		if k > 0 {
			ar.b = append(ar.b, '\n')
		}
		ar.b = append(ar.b, v.value...)
	}
	return ar.since(m)
}

// appendNamedLines writes name=value lines for the overflow field.
func (c *converter) appendNamedLines(vals []namedValue) {
	ar := &c.b.arena
	for k, v := range vals {
		if k > 0 {
			ar.b = append(ar.b, '\n')
		}
		ar.b = append(ar.b, v.name...)
		ar.b = append(ar.b, '=')
		ar.b = append(ar.b, v.value...)
	}
}

// appendCachedArg resolves a cached_args annotation: its value is a string id.
func (c *converter) appendCachedArg(v *pb.PAnnotationValue) {
	ar := &c.b.arena
	id, ok := annotationInt(v)
	if !ok {
		ar.b = appendAnnotationValue(ar.b, v)
		return
	}
	if s, found := c.res.str(int32(id)); found {
		ar.b = append(ar.b, s...)
		return
	}
	ar.b = appendPlaceholder(ar.b, refString, id)
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
