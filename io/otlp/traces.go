package otlp

import (
	"net"
	"strconv"
	"strings"

	"github.com/apmkit/apmkit/internal/urltemplate"
	"github.com/apmkit/apmkit/io/lprecord"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Traces maps span records to one export request: a ResourceSpans per agent resource
// (service, agent, host, extra tags), in first-seen order, each span in row order.
func Traces(spans []lprecord.Span) *coltracepb.ExportTraceServiceRequest {
	var gs groups[*tracepb.Span]
	for i := range spans {
		s := &spans[i]
		g := gs.get(agentRes{service: s.Service, agentID: s.AgentID, agentName: s.AgentName, host: s.Host, extra: s.Tags})
		g.noteLanguage(languageOf(s.ServiceType, s.Kind == "entry"))
		g.items = append(g.items, Span(s))
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	for _, g := range gs.order {
		req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{
			Resource:   g.res.resource(g.language),
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: scope(), Spans: g.items}},
		})
	}
	return req
}

// Span maps one span record.
func Span(s *lprecord.Span) *tracepb.Span {
	tid, sid := TraceID(s.TraceID), SpanID(s.SpanID)
	start := max(s.Start, 0) * 1000
	end := start + max(s.Duration, 0)*1000
	name := spanName(s)
	out := &tracepb.Span{
		TraceId:           tid[:],
		SpanId:            sid[:],
		Name:              name,
		Kind:              kindOf(s),
		StartTimeUnixNano: uint64(start),
		EndTimeUnixNano:   uint64(end),
		Attributes:        spanAttrs(s, name),
	}
	if s.ParentID != 0 {
		pid := SpanID(s.ParentID)
		out.ParentSpanId = pid[:]
	}
	if s.Error {
		msg := s.ErrorMessage
		if msg == "" {
			msg = s.ErrorType
		}
		out.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: msg}
	}
	if s.ErrorType != "" || s.ErrorMessage != "" || s.ErrorStack != "" {
		var a attrs
		a.str("exception.type", s.ErrorType)
		a.str("exception.message", s.ErrorMessage)
		a.str("exception.stacktrace", s.ErrorStack)
		// Pinpoint does not say when the exception was thrown: it ended the call.
		out.Events = []*tracepb.Span_Event{{Name: "exception", TimeUnixNano: uint64(end), Attributes: a}}
	}
	return out
}

// kindOf: an entry span is the server side of a request, an exit span the client side,
// except for a message broker's service types (source_type message_queue), which make a
// producer (exit) and a consumer (entry).
func kindOf(s *lprecord.Span) tracepb.Span_SpanKind {
	queue := s.SourceType == "message_queue"
	switch {
	case s.Kind == "entry" && queue:
		return tracepb.Span_SPAN_KIND_CONSUMER
	case s.Kind == "entry":
		return tracepb.Span_SPAN_KIND_SERVER
	case s.Kind == "exit" && queue:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case s.Kind == "exit":
		return tracepb.Span_SPAN_KIND_CLIENT
	}
	return tracepb.Span_SPAN_KIND_INTERNAL
}

// rawURL is the URL as it came: http_url_raw when the http_url tag holds its template.
func rawURL(s *lprecord.Span) string {
	if s.HTTPURLRaw != "" {
		return s.HTTPURLRaw
	}
	return s.HTTPURL
}

// spanName is low-cardinality, as OTel wants: an entry span with a URL is named by its
// method and route ("GET /users/{id}"), any other span by its operation (the API,
// "DemoController.demo2()"), else its resource, service type or span type.
func spanName(s *lprecord.Span) string {
	if u := rawURL(s); s.Kind == "entry" && u != "" {
		route := urltemplate.Template(u)
		if s.HTTPMethod != "" {
			return s.HTTPMethod + " " + route
		}
		return route
	}
	for _, n := range []string{s.Operation, s.Resource, s.ServiceType} {
		if n != "" {
			return n
		}
	}
	return s.Kind
}

// spanAttrs: semantic-convention attributes where the row has the data, pinpoint.<key>
// for everything else, so nothing the line protocol holds is lost.
func spanAttrs(s *lprecord.Span, name string) attrs {
	var a attrs
	a.str("pinpoint.transaction_id", s.TraceID)
	a.str("pinpoint.span_id", strconv.FormatInt(s.SpanID, 10))
	a.str("pinpoint.service_type", s.ServiceType)
	a.str("pinpoint.source_type", s.SourceType)
	if name != s.Operation {
		a.str("pinpoint.operation", s.Operation)
	}
	httpAttrs(&a, s)
	targetAttrs(&a, s, name)
	if s.Partial {
		a.bool("pinpoint.partial", true)
	}
	for _, kv := range s.Attrs {
		if s.Kind == "entry" && kv.Key == "acceptor_host" {
			continue // server.address (targetAttrs)
		}
		a.str(attrKey(kv.Key), kv.Value)
	}
	a.str("pinpoint.message", s.Message)
	return a
}

// attrKey names a row's other fields: the entry span's caller, as semantic conventions
// name it, and pinpoint.<field> for the rest (annotations, bind values...).
func attrKey(field string) string {
	if field == "remote_addr" {
		return "client.address"
	}
	return "pinpoint." + field
}

func httpAttrs(a *attrs, s *lprecord.Span) {
	a.str("http.request.method", s.HTTPMethod)
	if code, err := strconv.ParseInt(s.HTTPStatusCode, 10, 64); err == nil {
		a.int("http.response.status_code", code)
	} else {
		a.str("pinpoint.http_status_code", s.HTTPStatusCode)
	}
	u := rawURL(s)
	if u == "" {
		return
	}
	if strings.Contains(u, "://") {
		a.str("url.full", u)
	} else {
		a.str("url.path", u)
	}
	if s.Kind == "entry" {
		a.str("http.route", urltemplate.Template(u))
	} else {
		a.str("url.template", urltemplate.Template(u))
	}
}

// targetAttrs says what a span called or served: a database call's system, namespace and
// query, a message broker's system, the peer of other calls; the resource when no
// convention takes it.
func targetAttrs(a *attrs, s *lprecord.Span, name string) {
	db := s.SourceType == "db" || s.SourceType == "cache"
	if db {
		a.str("db.system", dbSystem(s.ServiceType, s.SourceType))
	}
	if s.SourceType == "message_queue" {
		a.str("messaging.system", messagingSystems.of(s.ServiceType))
	}
	switch {
	case s.SourceType == "db" && s.Kind == "exit":
		a.str("db.namespace", s.Endpoint)
		a.str("db.query.text", s.Resource)
		return
	case s.Kind == "entry":
		serverAttrs(a, attrValue(s, "acceptor_host"))
	default:
		serverAttrs(a, s.Endpoint)
	}
	if s.Resource != name && s.Resource != rawURL(s) {
		a.str("pinpoint.resource", s.Resource)
	}
}

// attrValue is the value of one of the row's other fields, "" when absent. The entry
// span's acceptor_host (the host:port its caller called) is the server's address.
func attrValue(s *lprecord.Span, key string) string {
	for _, kv := range s.Attrs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

// serverAttrs writes server.address and, for host:port, server.port.
func serverAttrs(a *attrs, hostPort string) {
	if hostPort == "" {
		return
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		a.str("server.address", hostPort)
		return
	}
	a.str("server.address", host)
	if p, err := strconv.ParseInt(port, 10, 64); err == nil {
		a.int("server.port", p)
	}
}

// prefixTable maps service type name prefixes to attribute values.
type prefixTable []struct{ prefix, value string }

// of is the value of the first prefix serviceType starts with, "" when none.
func (t prefixTable) of(serviceType string) string {
	for _, p := range t {
		if strings.HasPrefix(serviceType, p.prefix) {
			return p.value
		}
	}
	return ""
}

// dbSystems are the db.system values of database and cache service types.
var dbSystems = prefixTable{
	{"MYSQL", "mysql"}, {"MARIADB", "mariadb"}, {"POSTGRESQL", "postgresql"}, {"ORACLE", "oracle"},
	{"MSSQL", "mssql"}, {"JTDS", "mssql"}, {"CUBRID", "cubrid"}, {"H2", "h2"}, {"DERBY", "derby"},
	{"SQLITE", "sqlite"}, {"MONGO", "mongodb"}, {"REDIS", "redis"}, {"MEMCACHED", "memcached"},
	{"CASSANDRA", "cassandra"}, {"ELASTICSEARCH", "elasticsearch"}, {"CLICKHOUSE", "clickhouse"},
	{"DB2", "db2"}, {"INFORMIX", "informix"}, {"HBASE", "hbase"}, {"COUCHDB", "couchdb"},
}

// messagingSystems are the messaging.system values of message broker service types.
var messagingSystems = prefixTable{
	{"KAFKA", "kafka"}, {"RABBITMQ", "rabbitmq"}, {"ROCKETMQ", "rocketmq"}, {"ACTIVEMQ", "activemq"},
	{"PULSAR", "pulsar"},
}

// dbSystem: the database a service type names; a database type apmkit does not know is
// "other_sql", a cache type it does not know has none.
func dbSystem(serviceType, sourceType string) string {
	if sys := dbSystems.of(serviceType); sys != "" || sourceType != "db" {
		return sys
	}
	return "other_sql"
}
