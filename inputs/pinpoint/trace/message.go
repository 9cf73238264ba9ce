package trace

import (
	"encoding/base64"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// The message field is the JSON of the original Pinpoint span or event, written the way
// protojson writes it (lowerCamel names, 64-bit integers as strings, zero values left out,
// bytes in base64, wrappers as plain values), so protojson.Unmarshal can read it back.
// It is written by hand because reflection-based protojson costs several times more per
// event than the rest of the conversion (see BenchmarkMessageJSON). An entry span's
// message leaves out spanEvent: every event has its own point with its own message.

// jsonWriter appends JSON to b. first tracks, per object, whether a comma is due.
type jsonWriter struct{ b []byte }

func (w *jsonWriter) open() bool { w.b = append(w.b, '{'); return true }
func (w *jsonWriter) close()     { w.b = append(w.b, '}') }

func (w *jsonWriter) key(first *bool, k string) {
	if !*first {
		w.b = append(w.b, ',')
	}
	*first = false
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) int32(first *bool, k string, v int32) {
	if v != 0 {
		w.key(first, k)
		w.b = strconv.AppendInt(w.b, int64(v), 10)
	}
}

// int64 writes a quoted 64-bit integer, as protojson does (JSON numbers lose precision).
func (w *jsonWriter) int64(first *bool, k string, v int64) {
	if v != 0 {
		w.key(first, k)
		w.quotedInt(v)
	}
}

func (w *jsonWriter) quotedInt(v int64) {
	w.b = append(w.b, '"')
	w.b = strconv.AppendInt(w.b, v, 10)
	w.b = append(w.b, '"')
}

func (w *jsonWriter) str(first *bool, k, v string) {
	if v != "" {
		w.key(first, k)
		w.string(v)
	}
}

func (w *jsonWriter) bool(first *bool, k string, v bool) {
	if v {
		w.key(first, k)
		w.b = append(w.b, "true"...)
	}
}

func (w *jsonWriter) bytes(first *bool, k string, v []byte) {
	if len(v) > 0 {
		w.key(first, k)
		w.b = append(w.b, '"')
		w.b = base64.StdEncoding.AppendEncode(w.b, v)
		w.b = append(w.b, '"')
	}
}

// wrapped writes a google.protobuf.StringValue: present (even empty) when set.
func (w *jsonWriter) wrapped(first *bool, k string, v interface{ GetValue() string }, set bool) {
	if set {
		w.key(first, k)
		w.string(v.GetValue())
	}
}

func (w *jsonWriter) float(v float64) {
	switch {
	case math.IsNaN(v):
		w.b = append(w.b, `"NaN"`...)
	case math.IsInf(v, 1):
		w.b = append(w.b, `"Infinity"`...)
	case math.IsInf(v, -1):
		w.b = append(w.b, `"-Infinity"`...)
	default:
		w.b = strconv.AppendFloat(w.b, v, 'g', -1, 64)
	}
}

// string writes a JSON string; invalid UTF-8 becomes U+FFFD so the field stays valid.
func (w *jsonWriter) string(s string) {
	w.b = append(w.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		w.b = append(w.b, s[start:i]...)
		w.escape(c)
		i++
		start = i
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

func (w *jsonWriter) escape(c byte) {
	const hexDigits = "0123456789abcdef"
	switch c {
	case '"', '\\':
		w.b = append(w.b, '\\', c)
	case '\n':
		w.b = append(w.b, '\\', 'n')
	case '\r':
		w.b = append(w.b, '\\', 'r')
	case '\t':
		w.b = append(w.b, '\\', 't')
	default:
		if c >= utf8.RuneSelf { // a byte of invalid UTF-8
			w.b = append(w.b, "\ufffd"...)
			return
		}
		w.b = append(w.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	}
}

// appendSpanJSON writes a PSpan without its events.
func appendSpanJSON(b []byte, s *pb.PSpan) []byte {
	w := jsonWriter{b: b}
	f := w.open()
	w.int32(&f, "version", s.GetVersion())
	if tx := s.GetTransactionId(); tx != nil {
		w.key(&f, "transactionId")
		w.transactionID(tx)
	}
	w.int64(&f, "spanId", s.GetSpanId())
	w.int64(&f, "parentSpanId", s.GetParentSpanId())
	w.int64(&f, "startTime", s.GetStartTime())
	w.int32(&f, "elapsed", s.GetElapsed())
	w.int32(&f, "apiId", s.GetApiId())
	w.int32(&f, "serviceType", s.GetServiceType())
	if ae := s.GetAcceptEvent(); ae != nil {
		w.key(&f, "acceptEvent")
		w.acceptEvent(ae)
	}
	w.annotations(&f, s.GetAnnotation())
	w.int32(&f, "flag", s.GetFlag())
	w.int32(&f, "err", s.GetErr())
	if ex := s.GetExceptionInfo(); ex != nil {
		w.key(&f, "exceptionInfo")
		w.intString(ex)
	}
	w.int32(&f, "applicationServiceType", s.GetApplicationServiceType())
	w.int32(&f, "loggingTransactionInfo", s.GetLoggingTransactionInfo())
	w.attributes(&f, "attribute", s.GetAttribute())
	w.close()
	return w.b
}

// appendEventJSON writes one PSpanEvent as it came on the wire.
func appendEventJSON(b []byte, e *pb.PSpanEvent) []byte {
	w := jsonWriter{b: b}
	f := w.open()
	w.int32(&f, "sequence", e.GetSequence())
	w.int32(&f, "depth", e.GetDepth())
	w.int32(&f, "startElapsed", e.GetStartElapsed())
	w.int32(&f, "endElapsed", e.GetEndElapsed())
	w.int32(&f, "serviceType", e.GetServiceType())
	w.annotations(&f, e.GetAnnotation())
	w.int32(&f, "apiId", e.GetApiId())
	if ex := e.GetExceptionInfo(); ex != nil {
		w.key(&f, "exceptionInfo")
		w.intString(ex)
	}
	if ne := e.GetNextEvent(); ne != nil {
		w.key(&f, "nextEvent")
		w.nextEvent(ne)
	}
	w.int32(&f, "asyncEvent", e.GetAsyncEvent())
	w.attributes(&f, "attribute", e.GetAttribute())
	w.close()
	return w.b
}

func (w *jsonWriter) transactionID(tx *pb.PTransactionId) {
	f := w.open()
	w.str(&f, "agentId", tx.GetAgentId())
	w.int64(&f, "agentStartTime", tx.GetAgentStartTime())
	w.int64(&f, "sequence", tx.GetSequence())
	w.close()
}

func (w *jsonWriter) acceptEvent(ae *pb.PAcceptEvent) {
	f := w.open()
	w.str(&f, "rpc", ae.GetRpc())
	w.str(&f, "endPoint", ae.GetEndPoint())
	w.str(&f, "remoteAddr", ae.GetRemoteAddr())
	if pi := ae.GetParentInfo(); pi != nil {
		w.key(&f, "parentInfo")
		g := w.open()
		w.str(&g, "parentApplicationName", pi.GetParentApplicationName())
		w.int32(&g, "parentApplicationType", pi.GetParentApplicationType())
		w.str(&g, "acceptorHost", pi.GetAcceptorHost())
		w.str(&g, "parentServiceName", pi.GetParentServiceName())
		w.close()
	}
	w.close()
}

func (w *jsonWriter) nextEvent(ne *pb.PNextEvent) {
	f := w.open()
	if me := ne.GetMessageEvent(); me != nil {
		w.key(&f, "messageEvent")
		g := w.open()
		w.int64(&g, "nextSpanId", me.GetNextSpanId())
		w.str(&g, "endPoint", me.GetEndPoint())
		w.str(&g, "destinationId", me.GetDestinationId())
		w.close()
	}
	w.close()
}

func (w *jsonWriter) intString(v *pb.PIntStringValue) {
	f := w.open()
	w.int32(&f, "intValue", v.GetIntValue())
	w.wrapped(&f, "stringValue", v.GetStringValue(), v.GetStringValue() != nil)
	w.close()
}

func (w *jsonWriter) annotations(first *bool, as []*pb.PAnnotation) {
	if len(as) == 0 {
		return
	}
	w.key(first, "annotation")
	w.b = append(w.b, '[')
	for i, a := range as {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		f := w.open()
		w.int32(&f, "key", a.GetKey())
		if v := a.GetValue(); v != nil {
			w.key(&f, "value")
			w.annotationValue(v)
		}
		w.close()
	}
	w.b = append(w.b, ']')
}

// annotationValue writes the oneof; a set member is written even when zero.
func (w *jsonWriter) annotationValue(v *pb.PAnnotationValue) {
	f := w.open()
	switch x := v.GetField().(type) {
	case *pb.PAnnotationValue_StringValue:
		w.key(&f, "stringValue")
		w.string(x.StringValue)
	case *pb.PAnnotationValue_BoolValue:
		w.key(&f, "boolValue")
		w.b = strconv.AppendBool(w.b, x.BoolValue)
	case *pb.PAnnotationValue_IntValue:
		w.key(&f, "intValue")
		w.b = strconv.AppendInt(w.b, int64(x.IntValue), 10)
	case *pb.PAnnotationValue_LongValue:
		w.key(&f, "longValue")
		w.quotedInt(x.LongValue)
	case *pb.PAnnotationValue_ShortValue:
		w.key(&f, "shortValue")
		w.b = strconv.AppendInt(w.b, int64(x.ShortValue), 10)
	case *pb.PAnnotationValue_DoubleValue:
		w.key(&f, "doubleValue")
		w.float(x.DoubleValue)
	case *pb.PAnnotationValue_BinaryValue:
		w.key(&f, "binaryValue")
		w.b = append(w.b, '"')
		w.b = base64.StdEncoding.AppendEncode(w.b, x.BinaryValue)
		w.b = append(w.b, '"')
	case *pb.PAnnotationValue_ByteValue:
		w.key(&f, "byteValue")
		w.b = strconv.AppendInt(w.b, int64(x.ByteValue), 10)
	case *pb.PAnnotationValue_IntStringValue:
		w.key(&f, "intStringValue")
		w.intString(x.IntStringValue)
	default:
		w.compositeValue(&f, v)
	}
	w.close()
}

// compositeValue writes the annotation value types made of several parts.
func (w *jsonWriter) compositeValue(f *bool, v *pb.PAnnotationValue) {
	switch x := v.GetField().(type) {
	case *pb.PAnnotationValue_StringStringValue:
		w.key(f, "stringStringValue")
		g := w.open()
		w.wrapped(&g, "stringValue1", x.StringStringValue.GetStringValue1(), x.StringStringValue.GetStringValue1() != nil)
		w.wrapped(&g, "stringValue2", x.StringStringValue.GetStringValue2(), x.StringStringValue.GetStringValue2() != nil)
		w.close()
	case *pb.PAnnotationValue_IntStringStringValue:
		w.key(f, "intStringStringValue")
		v := x.IntStringStringValue
		g := w.open()
		w.int32(&g, "intValue", v.GetIntValue())
		w.wrapped(&g, "stringValue1", v.GetStringValue1(), v.GetStringValue1() != nil)
		w.wrapped(&g, "stringValue2", v.GetStringValue2(), v.GetStringValue2() != nil)
		w.close()
	case *pb.PAnnotationValue_LongIntIntByteByteStringValue:
		w.key(f, "longIntIntByteByteStringValue")
		v := x.LongIntIntByteByteStringValue
		g := w.open()
		w.int64(&g, "longValue", v.GetLongValue())
		w.int32(&g, "intValue1", v.GetIntValue1())
		w.int32(&g, "intValue2", v.GetIntValue2())
		w.int32(&g, "byteValue1", v.GetByteValue1())
		w.int32(&g, "byteValue2", v.GetByteValue2())
		w.wrapped(&g, "stringValue", v.GetStringValue(), v.GetStringValue() != nil)
		w.close()
	case *pb.PAnnotationValue_IntBooleanIntBooleanValue:
		w.key(f, "intBooleanIntBooleanValue")
		v := x.IntBooleanIntBooleanValue
		g := w.open()
		w.int32(&g, "intValue1", v.GetIntValue1())
		w.bool(&g, "boolValue1", v.GetBoolValue1())
		w.int32(&g, "intValue2", v.GetIntValue2())
		w.bool(&g, "boolValue2", v.GetBoolValue2())
		w.close()
	case *pb.PAnnotationValue_BytesStringStringValue:
		w.key(f, "bytesStringStringValue")
		v := x.BytesStringStringValue
		g := w.open()
		w.bytes(&g, "bytesValue", v.GetBytesValue())
		w.wrapped(&g, "stringValue1", v.GetStringValue1(), v.GetStringValue1() != nil)
		w.wrapped(&g, "stringValue2", v.GetStringValue2(), v.GetStringValue2() != nil)
		w.close()
	}
}

func (w *jsonWriter) attributes(first *bool, k string, as []*pb.PAttribute) {
	if len(as) == 0 {
		return
	}
	w.key(first, k)
	w.b = append(w.b, '[')
	for i, a := range as {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.attribute(a)
	}
	w.b = append(w.b, ']')
}

func (w *jsonWriter) attribute(a *pb.PAttribute) {
	f := w.open()
	w.str(&f, "key", a.GetKey())
	if v := a.GetValue(); v != nil {
		w.key(&f, "value")
		w.attributeValue(v)
	}
	w.close()
}

func (w *jsonWriter) attributeValue(v *pb.PAttributeValue) {
	f := w.open()
	switch x := v.GetField().(type) {
	case *pb.PAttributeValue_StringValue:
		w.key(&f, "stringValue")
		w.string(x.StringValue)
	case *pb.PAttributeValue_BoolValue:
		w.key(&f, "boolValue")
		w.b = strconv.AppendBool(w.b, x.BoolValue)
	case *pb.PAttributeValue_LongValue:
		w.key(&f, "longValue")
		w.quotedInt(x.LongValue)
	case *pb.PAttributeValue_DoubleValue:
		w.key(&f, "doubleValue")
		w.float(x.DoubleValue)
	case *pb.PAttributeValue_BinaryValue:
		w.key(&f, "binaryValue")
		w.b = append(w.b, '"')
		w.b = base64.StdEncoding.AppendEncode(w.b, x.BinaryValue)
		w.b = append(w.b, '"')
	case *pb.PAttributeValue_ArrayValue:
		w.key(&f, "arrayValue")
		g := w.open()
		if vs := x.ArrayValue.GetValues(); len(vs) > 0 {
			w.key(&g, "values")
			w.b = append(w.b, '[')
			for i, e := range vs {
				if i > 0 {
					w.b = append(w.b, ',')
				}
				w.attributeValue(e)
			}
			w.b = append(w.b, ']')
		}
		w.close()
	case *pb.PAttributeValue_KvlistValue:
		w.key(&f, "kvlistValue")
		g := w.open()
		w.attributes(&g, "values", x.KvlistValue.GetValues())
		w.close()
	}
	w.close()
}
