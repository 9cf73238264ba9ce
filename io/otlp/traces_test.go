package otlp

import (
	"testing"

	"github.com/apmkit/apmkit/io/lprecord"
)

// Rows as apmkit writes them; every expected value is written by hand from the row and
// docs/OTLP.md.

func TestClientSpanWithError(t *testing.T) {
	got := oneSpan(t, `pinpoint,agent_id=frontend-01,endpoint=127.0.0.1:18081,host=vm,http_method=GET,http_status_code=503,http_url=http://127.0.0.1:18081/api/users,operation=http/Client.Do(),service=frontend,service_type=GO_HTTP_CLIENT,source_type=http,span_type=exit,status=error trace_id="frontend-01^1795417119878^2",span_id="-304823916064687458",parent_id="-342801597421389719",resource="http/Client.Do()",start=1795417119963000i,duration=6000i,error_type="timeout",error_message="read: deadline",error_stack="a\nb",http_url_raw="http://127.0.0.1:18081/api/users?id=2",args_0="x",message="{}" 1795417119963435080`)
	diff(t, got, `
span "http/Client.Do()" CLIENT trace=de09b22c2a866f82102be693c4e7ec82 span=fbc50c436bebba9e parent=fb3e1fc36d42f869 1795417119963000000..1795417119969000000 status=ERROR:"read: deadline"
  pinpoint.transaction_id="frontend-01^1795417119878^2"
  pinpoint.span_id="-304823916064687458"
  pinpoint.service_type="GO_HTTP_CLIENT"
  pinpoint.source_type="http"
  http.request.method="GET"
  http.response.status_code=503
  url.full="http://127.0.0.1:18081/api/users?id=2"
  url.template="http://127.0.0.1:18081/api/users"
  server.address="127.0.0.1"
  server.port=18081
  pinpoint.args_0="x"
  pinpoint.message="{}"
  event exception @1795417119969000000 exception.type="timeout" exception.message="read: deadline" exception.stacktrace="a\nb"`)
}

func TestServerSpan(t *testing.T) {
	got := oneSpan(t, `pinpoint,agent_id=backend-01,host=vm,http_method=GET,http_status_code=200,http_url=/api/users/{id},operation=HTTP\ Server,partial=true,service=backend,service_type=GO,source_type=web,span_type=entry,status=ok trace_id="frontend-01^1795417119878^2",span_id="2177403690915346696",parent_id="-7264742080647816705",resource="/api/users/42",start=1795417119966000i,duration=1000i,remote_addr="127.0.0.1",parent_application="frontend",acceptor_host="127.0.0.1:18081",http_url_raw="/api/users/42" 1795417119966437652`)
	diff(t, got, `
span "GET /api/users/{id}" SERVER trace=de09b22c2a866f82102be693c4e7ec82 span=1e37b11ed9a23908 parent=9b2e7391622799ff 1795417119966000000..1795417119967000000
  pinpoint.transaction_id="frontend-01^1795417119878^2"
  pinpoint.span_id="2177403690915346696"
  pinpoint.service_type="GO"
  pinpoint.source_type="web"
  pinpoint.operation="HTTP Server"
  http.request.method="GET"
  http.response.status_code=200
  url.path="/api/users/42"
  http.route="/api/users/{id}"
  server.address="127.0.0.1"
  server.port=18081
  pinpoint.partial=true
  client.address="127.0.0.1"
  pinpoint.parent_application="frontend"`)
}

func TestDatabaseSpan(t *testing.T) {
	got := oneSpan(t, `pinpoint,endpoint=demo,operation=ConnQueryContext,service=backend,service_type=MYSQL_EXECUTE_QUERY,source_type=db,span_type=exit,status=ok trace_id="t",span_id="1",parent_id="2",resource="SELECT name FROM users WHERE id = ?",start=5i,duration=0i,db_sql_bind_values="2" 5000`)
	diff(t, got, `
span "ConnQueryContext" CLIENT trace=e3b98a4da31a127d4bde6e43033f66ba span=0000000000000001 parent=0000000000000002 5000..5000
  pinpoint.transaction_id="t"
  pinpoint.span_id="1"
  pinpoint.service_type="MYSQL_EXECUTE_QUERY"
  pinpoint.source_type="db"
  db.system="mysql"
  db.namespace="demo"
  db.query.text="SELECT name FROM users WHERE id = ?"
  pinpoint.db_sql_bind_values="2"`)

	// A database apmkit has no name for is other_sql.
	got = oneSpan(t, `pinpoint,operation=q,service_type=UNKNOWN_DB_EXECUTE_QUERY,source_type=db,span_type=exit trace_id="t",span_id="1",parent_id="2",start=5i,duration=0i 5000`)
	diff(t, got, `
span "q" CLIENT trace=e3b98a4da31a127d4bde6e43033f66ba span=0000000000000001 parent=0000000000000002 5000..5000
  pinpoint.transaction_id="t"
  pinpoint.span_id="1"
  pinpoint.service_type="UNKNOWN_DB_EXECUTE_QUERY"
  pinpoint.source_type="db"
  db.system="other_sql"`)
}

func TestMessagingAndLocalSpans(t *testing.T) {
	got := oneSpan(t, `pinpoint,endpoint=kafka:9092,operation=send,service_type=KAFKA_CLIENT,source_type=message_queue,span_type=exit trace_id="t",span_id="1",parent_id="2",start=5i,duration=1i 5000`)
	diff(t, got, `
span "send" PRODUCER trace=e3b98a4da31a127d4bde6e43033f66ba span=0000000000000001 parent=0000000000000002 5000..6000
  pinpoint.transaction_id="t"
  pinpoint.span_id="1"
  pinpoint.service_type="KAFKA_CLIENT"
  pinpoint.source_type="message_queue"
  messaging.system="kafka"
  server.address="kafka"
  server.port=9092`)

	got = oneSpan(t, `pinpoint,operation=poll,service_type=KAFKA_CLIENT,source_type=message_queue,span_type=entry trace_id="t",span_id="3",parent_id="0",start=5i,duration=1i 5000`)
	diff(t, got, `
span "poll" CONSUMER trace=e3b98a4da31a127d4bde6e43033f66ba span=0000000000000003 parent= 5000..6000
  pinpoint.transaction_id="t"
  pinpoint.span_id="3"
  pinpoint.service_type="KAFKA_CLIENT"
  pinpoint.source_type="message_queue"
  messaging.system="kafka"`)

	// A local span with only a resource is named by it; a status error without a message
	// has the exception's type as the status message.
	got = oneSpan(t, `pinpoint,span_type=local,status=error trace_id="t",span_id="4",parent_id="3",resource="main.work()",start=5i,duration=-3i,error_type="panic" 5000`)
	diff(t, got, `
span "main.work()" INTERNAL trace=e3b98a4da31a127d4bde6e43033f66ba span=0000000000000004 parent=0000000000000003 5000..5000 status=ERROR:"panic"
  pinpoint.transaction_id="t"
  pinpoint.span_id="4"
  event exception @5000 exception.type="panic"`)
}

// One ResourceSpans per agent resource, in first-seen order; the language comes from the
// first span that tells it, an input tag goes to the resource.
func TestTracesGroupByResource(t *testing.T) {
	rows := `pinpoint,agent_id=a1,host=h1,operation=x,service=shop,service_type=SPRING_BEAN,span_type=local trace_id="t",span_id="1",parent_id="2",start=1i,duration=1i 1
pinpoint,agent_id=b1,agent_name=b,env=prod,host=h2,operation=y,service=pay,service_type=GO_FUNCTION,span_type=local trace_id="t",span_id="3",parent_id="4",start=1i,duration=1i 1
pinpoint,agent_id=a1,host=h1,operation=z,service=shop,service_type=TOMCAT,span_type=entry trace_id="t",span_id="2",parent_id="0",start=1i,duration=1i 1
pinpoint,operation=w,span_type=local trace_id="t",span_id="5",parent_id="4",start=1i,duration=1i 1
`
	spans, drops := lprecord.DecodeSpans([]byte(rows))
	if drops.Total() != 0 {
		t.Fatal(drops.Err())
	}
	req := Traces(spans)
	var got string
	for _, rs := range req.ResourceSpans {
		got += "resource " + kvText(rs.Resource.Attributes) + " scope=" + rs.ScopeSpans[0].Scope.Name + "\n"
		for _, s := range rs.ScopeSpans[0].Spans {
			got += "  " + s.Name + "\n"
		}
	}
	diff(t, got, `
resource service.name="shop" service.instance.id="a1" host.name="h1" telemetry.sdk.language="java" scope=apmkit/pinpoint
  x
  z
resource service.name="pay" service.instance.id="b1" host.name="h2" pinpoint.agent_name="b" telemetry.sdk.language="go" env="prod" scope=apmkit/pinpoint
  y
resource service.name="unknown_service" scope=apmkit/pinpoint
  w
`)
}
