package gen

import (
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// kind is what an event of the emulated Java web request does.
type kind uint8

const (
	kindHostValve  kind = iota // Tomcat's valve, the first event under the entry span
	kindDispatcher             // Spring MVC's DispatcherServlet
	kindController
	kindService
	kindSQL   // a MySQL query with bind values
	kindRedis // a Redis GET
	kindHTTP  // an HTTP call to the API application (nextSpanId)
	kindAsync // the first event of async work (serviceType ASYNC)
	kindTask  // the Runnable the async work runs
)

// Pinpoint serviceType and annotation key codes (PINPOINT-PROTOCOL.md section 5).
const (
	stAsync        = 100
	stTomcat       = 1010
	stTomcatMethod = 1011
	stMySQLQuery   = 2101
	stSpringMVC    = 5051
	stRedis        = 8200
	stHTTPClient4  = 9052

	annArg0       = -1
	annSQLID      = 20
	annHTTPURL    = 40
	annHTTPStatus = 46
)

// MinEvents is the smallest request ppload emulates: the Tomcat/Spring frame, a service
// method, a SQL query and the Redis or HTTP call, so every special event has its place.
const MinEvents = 6

// Fixed positions of the special events in a span of at least MinEvents events.
const (
	posAsyncSpawn = 3 // the first service method submits the async work
	posFailedSQL  = 4 // the first query throws in error spans
	posHTTPCall   = 5 // the first Redis call becomes the HTTP call in linked transactions
)

// event is one planned span event, its times in ms from the span's start.
type event struct {
	kind       kind
	depth      int32
	start, end int64
	asyncID    int32
	failed     bool
	nextSpanID int64
	sqlID      int32
}

// layout returns the events of a Java web request of n events: Tomcat valve (depth 1),
// DispatcherServlet (2), controller (3), then service methods (4) each followed by
// queries and cache calls (5). Runs of depth-5 siblings exercise the depth compression.
func layout(n int) []event {
	evs := make([]event, n)
	frame := [...]kind{kindHostValve, kindDispatcher, kindController}
	body := [...]event{
		{kind: kindService, depth: 4},
		{kind: kindSQL, depth: 5, sqlID: sqlSelect},
		{kind: kindRedis, depth: 5},
		{kind: kindSQL, depth: 5, sqlID: sqlUpdate},
	}
	for i := range evs {
		if i < len(frame) {
			evs[i] = event{kind: frame[i], depth: int32(i + 1)}
			continue
		}
		evs[i] = body[(i-len(frame))%len(body)]
	}
	return evs
}

// asyncLayout is the async work a span spawns: the ASYNC event and the task it runs.
func asyncLayout() []event {
	return []event{{kind: kindAsync, depth: 1}, {kind: kindTask, depth: 2}}
}

// isLeaf tells whether event i has no children (the next event is not deeper).
func isLeaf(evs []event, i int) bool {
	return i == len(evs)-1 || evs[i+1].depth <= evs[i].depth
}

// schedule gives every event a start and an end, in ms from the span's start, with each
// child inside its parent's time and siblings one after another; httpMs is the duration of
// the HTTP call (the callee span plus network time). It returns the span's elapsed time.
func (g *Generator) schedule(evs []event, httpMs int64) int64 {
	stack := make([]int, 0, 8)
	t := int64(g.rng.IntN(2)) // the entry span's own work before its first event
	closeTop := func() {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if isLeaf(evs, i) {
			evs[i].end = evs[i].start + g.leafMs(evs[i].kind, httpMs)
		} else {
			evs[i].end = t + int64(g.rng.IntN(2))
		}
		t = evs[i].end
	}
	for i := range evs {
		for len(stack) > 0 && evs[stack[len(stack)-1]].depth >= evs[i].depth {
			closeTop()
		}
		t += int64(g.rng.IntN(2))
		evs[i].start = t
		stack = append(stack, i)
	}
	for len(stack) > 0 {
		closeTop()
	}
	return t + 1
}

// leafMs is a plausible duration of a leaf event, in ms (Pinpoint's resolution).
func (g *Generator) leafMs(k kind, httpMs int64) int64 {
	switch k {
	case kindSQL:
		return 1 + int64(g.rng.IntN(4))
	case kindRedis:
		return int64(g.rng.IntN(2))
	case kindHTTP:
		return httpMs
	case kindTask:
		return 1 + int64(g.rng.IntN(3))
	}
	return int64(g.rng.IntN(3))
}

// encode turns planned events into wire events the way the Java agent does: startElapsed
// is the delta from the previous event's start (the first one's from base, the message's
// time base in ms from the span's start) and a depth equal to the previous one is sent as
// 0. Both restart in every message, so the first event always carries its absolute depth.
func encode(evs []event, firstSeq int32, base int64) []*pb.PSpanEvent {
	out := make([]*pb.PSpanEvent, len(evs))
	prevStart, prevDepth := base, int32(0)
	for i := range evs {
		e := &evs[i]
		pe := &pb.PSpanEvent{
			Sequence:     firstSeq + int32(i),
			StartElapsed: int32(e.start - prevStart),
			EndElapsed:   int32(e.end - e.start),
			ServiceType:  serviceTypeOf(e.kind),
			ApiId:        apiIDOf(e.kind),
			AsyncEvent:   e.asyncID,
		}
		if e.depth != prevDepth {
			pe.Depth = e.depth
		}
		prevStart, prevDepth = e.start, e.depth
		decorate(pe, e)
		out[i] = pe
	}
	return out
}

// decorate adds what a kind of event carries beyond times and ids: annotations, the
// destination of calls, the exception of a failed query.
func decorate(pe *pb.PSpanEvent, e *event) {
	switch e.kind {
	case kindController:
		pe.Annotation = []*pb.PAnnotation{stringAnn(annArg0, "42")}
	case kindSQL:
		pe.Annotation = []*pb.PAnnotation{sqlAnn(e.sqlID, "1, 42")}
		pe.NextEvent = messageEvent(0, "mysql.shop:3306", "shop")
	case kindRedis:
		pe.NextEvent = messageEvent(0, "redis.shop:6379", "REDIS")
	case kindHTTP:
		pe.Annotation = []*pb.PAnnotation{
			stringAnn(annHTTPURL, "http://api.shop:8080/stock/42"),
			intAnn(annHTTPStatus, 200),
		}
		pe.NextEvent = messageEvent(e.nextSpanID, "api.shop:8080", "api.shop:8080")
	}
	if e.failed {
		pe.ExceptionInfo = &pb.PIntStringValue{
			IntValue:    strSQLException,
			StringValue: wrapperspb.String("Statement cancelled due to timeout or client request"),
		}
	}
}

func serviceTypeOf(k kind) int32 {
	switch k {
	case kindHostValve:
		return stTomcatMethod
	case kindSQL:
		return stMySQLQuery
	case kindRedis:
		return stRedis
	case kindHTTP:
		return stHTTPClient4
	case kindAsync:
		return stAsync
	}
	return stSpringMVC
}

func apiIDOf(k kind) int32 {
	switch k {
	case kindHostValve:
		return apiHostValve
	case kindDispatcher:
		return apiDispatcher
	case kindController:
		return apiController
	case kindSQL:
		return apiExecuteQuery
	case kindRedis:
		return apiRedisGet
	case kindHTTP:
		return apiHTTPExecute
	case kindAsync:
		return apiAsyncInvocation
	case kindTask:
		return apiAsyncTask
	}
	return apiService
}

func messageEvent(nextSpanID int64, endPoint, destination string) *pb.PNextEvent {
	return &pb.PNextEvent{Field: &pb.PNextEvent_MessageEvent{MessageEvent: &pb.PMessageEvent{
		NextSpanId: nextSpanID, EndPoint: endPoint, DestinationId: destination,
	}}}
}

func stringAnn(key int32, v string) *pb.PAnnotation {
	return &pb.PAnnotation{Key: key, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_StringValue{StringValue: v}}}
}

func intAnn(key, v int32) *pb.PAnnotation {
	return &pb.PAnnotation{Key: key, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntValue{IntValue: v}}}
}

// sqlAnn is annotation 20 as the Java JDBC plugins send it: {sqlId, output params (none),
// bind values}.
func sqlAnn(sqlID int32, binds string) *pb.PAnnotation {
	return &pb.PAnnotation{Key: annSQLID, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntStringStringValue{
		IntStringStringValue: &pb.PIntStringStringValue{IntValue: sqlID, StringValue2: wrapperspb.String(binds)},
	}}}
}
