package servicetype

import (
	"strings"
	"sync"
	"testing"
)

func TestCategoryOf(t *testing.T) {
	// Both ends of every range, and the gaps between them.
	cases := []struct {
		code int32
		want Category
	}{
		{-2, Undefined}, {-1, Undefined},
		{0, Internal}, {999, Internal},
		{1000, Server}, {1999, Server},
		{2000, Database}, {2999, Database},
		{3000, Undefined}, {4999, Undefined},
		{5000, Library}, {7999, Library},
		{8000, Cache}, {8299, Cache},
		{8300, MessageBroker}, {8799, MessageBroker},
		{8800, HBase}, {8899, HBase},
		{8900, Cache}, {8999, Cache},
		{9000, RPC}, {9999, RPC},
		{10000, Undefined},
	}
	for _, c := range cases {
		if got := CategoryOf(c.code); got != c.want {
			t.Errorf("CategoryOf(%d) = %v, want %v", c.code, got, c.want)
		}
	}
}

func TestCategoryNamesAndSourceTypes(t *testing.T) {
	cases := []struct {
		c         Category
		name, src string
	}{
		{Undefined, "UNDEFINED", "custom"},
		{Internal, "INTERNAL", "custom"},
		{Server, "SERVER", "web"},
		{Database, "DATABASE", "db"},
		{Library, "LIBRARY", "custom"},
		{Cache, "CACHE", "cache"},
		{MessageBroker, "MESSAGE_BROKER", "message_queue"},
		{HBase, "HBASE", "custom"},
		{RPC, "RPC", "http"},
		{Category(42), "Category(42)", "custom"},
	}
	for _, c := range cases {
		if got := c.c.String(); got != c.name {
			t.Errorf("Category(%d).String() = %q, want %q", int(c.c), got, c.name)
		}
		if got := c.c.SourceType(); got != c.src {
			t.Errorf("%v.SourceType() = %q, want %q", c.c, got, c.src)
		}
	}
}

// TestBuiltinFacts pins whole definitions that apmkit's conversion relies
// on, with the properties Pinpoint gives them.
func TestBuiltinFacts(t *testing.T) {
	tb := Builtin()
	cases := []struct {
		want     Type
		category Category
		source   string
	}{
		{Type{Code: 1010, Name: "TOMCAT", Desc: "TOMCAT", RecordStatistics: true}, Server, "web"},
		{Type{Code: 1800, Name: "GO", Desc: "GO", RecordStatistics: true}, Server, "web"},
		{Type{Code: 1801, Name: "GO_FUNCTION", Desc: "GO_FUNCTION", Matcher: Matcher{Kind: MatchArgs}}, Server, "web"},
		{Type{Code: 2101, Name: "MYSQL_EXECUTE_QUERY", Desc: "MYSQL", Terminal: true, RecordStatistics: true, IncludeDestinationID: true}, Database, "db"},
		{Type{Code: 2100, Name: "MYSQL", Desc: "MYSQL", Terminal: true, IncludeDestinationID: true}, Database, "db"},
		// The Go agent's database/sql events for drivers it does not know
		// (SQLite in the recordings).
		{Type{Code: 2051, Name: "UNKNOWN_DB_EXECUTE_QUERY", Desc: "UNKNOWN_DB", Terminal: true, RecordStatistics: true, IncludeDestinationID: true}, Database, "db"},
		{Type{Code: 8200, Name: "REDIS", Desc: "REDIS", Terminal: true, RecordStatistics: true}, Cache, "cache"},
		{Type{Code: 8203, Name: "REDIS_REDISSON", Desc: "REDIS", Terminal: true, RecordStatistics: true, Matcher: Matcher{Kind: MatchExact, Code: -1}}, Cache, "cache"},
		{Type{Code: 8660, Name: "KAFKA_CLIENT", Desc: "KAFKA_CLIENT", Queue: true, RecordStatistics: true}, MessageBroker, "message_queue"},
		{Type{Code: 8800, Name: "HBASE_CLIENT", Desc: "HBASE_CLIENT", Terminal: true, RecordStatistics: true}, HBase, "custom"},
		{Type{Code: 9401, Name: "GO_HTTP_CLIENT", Desc: "GO_HTTP_CLIENT", RecordStatistics: true, Matcher: Matcher{Kind: MatchArgs}}, RPC, "http"},
		{Type{Code: 9204, Name: "ELASTICSEARCH_HIGHLEVEL_CLIENT", Desc: "ELASTICSEARCH", Alias: true}, RPC, "http"},
		{Type{Code: 100, Name: "ASYNC", Desc: "ASYNC"}, Internal, "custom"},
		{Type{Code: 2, Name: "USER", Desc: "USER", RecordStatistics: true}, Internal, "custom"},
		{Type{Code: -1, Name: "UNDEFINED", Desc: "UNDEFINED", Terminal: true}, Undefined, "custom"},
		{Type{Code: 5071, Name: "SPRING_BEAN", Desc: "SPRING_BEAN"}, Library, "custom"},
	}
	for _, c := range cases {
		got, ok := tb.Lookup(c.want.Code)
		if !ok {
			t.Errorf("code %d is not built in", c.want.Code)
			continue
		}
		if got != c.want {
			t.Errorf("code %d:\n got %+v\nwant %+v", c.want.Code, got, c.want)
		}
		if got.Category() != c.category || got.SourceType() != c.source {
			t.Errorf("%s: category %v / %s, want %v / %s", got.Name, got.Category(), got.SourceType(), c.category, c.source)
		}
		if byName, ok := tb.ByName(c.want.Name); !ok || byName != got {
			t.Errorf("ByName(%q) = %+v, %v", c.want.Name, byName, ok)
		}
	}
}

func TestUnknownCodes(t *testing.T) {
	tb := Builtin()
	cases := []struct {
		code     int32
		name     string
		category Category
		source   string
	}{
		{7777, "UNKNOWN_7777", Library, "custom"},
		{1999, "UNKNOWN_1999", Server, "web"},
		{2999, "UNKNOWN_2999", Database, "db"},
		{8950, "UNKNOWN_8950", Cache, "cache"},
		{9950, "UNKNOWN_9950", RPC, "http"},
		{8500, "UNKNOWN_8500", MessageBroker, "message_queue"},
		{4000, "UNKNOWN_4000", Undefined, "custom"},
		{-7, "UNKNOWN_-7", Undefined, "custom"},
	}
	for _, c := range cases {
		got, ok := tb.Lookup(c.code)
		if ok {
			t.Errorf("Lookup(%d) found %+v; the test needs an undefined code", c.code, got)
		}
		want := Type{Code: c.code, Name: c.name, Desc: c.name}
		if got != want || tb.Type(c.code) != want {
			t.Errorf("code %d: Lookup %+v, Type %+v, want %+v", c.code, got, tb.Type(c.code), want)
		}
		if got.Category() != c.category || got.SourceType() != c.source {
			t.Errorf("code %d: %v/%s, want %v/%s", c.code, got.Category(), got.SourceType(), c.category, c.source)
		}
	}
	if _, ok := tb.ByName("UNKNOWN_7777"); ok {
		t.Error("a synthesized name is found by ByName")
	}
}

// sheetTypes lists every serviceType code of docs/PINPOINT-PROTOCOL.md
// section 5 with the name the sheet gives. For pairs ("2150/2151 MARIADB")
// the second code's name must start with the sheet's name.
var sheetTypes = []struct {
	code int32
	name string
}{
	{-1, "UNDEFINED"}, {1, "UNKNOWN"}, {2, "USER"}, {100, "ASYNC"}, {1000, "STAND_ALONE"}, {1001, "JAVA"},
	{1010, "TOMCAT"}, {1011, "TOMCAT_METHOD"}, {1030, "JETTY"}, {1120, "UNDERTOW"}, {1130, "GRPC_SERVER"},
	{1140, "REACTOR_NETTY"}, {1210, "SPRING_BOOT"}, {1400, "NODE"}, {1500, "PHP"}, {1700, "PYTHON"},
	{1800, "GO"}, {1801, "GO_FUNCTION"},
	{2050, "UNKNOWN_DB"}, {2051, "UNKNOWN_DB_EXECUTE_QUERY"}, {2100, "MYSQL"}, {2101, "MYSQL_EXECUTE_QUERY"},
	{2150, "MARIADB"}, {2151, "MARIADB"}, {2200, "MSSQL"}, {2201, "MSSQL"}, {2250, "MSSQL_JDBC"}, {2251, "MSSQL_JDBC"},
	{2300, "ORACLE"}, {2301, "ORACLE"}, {2400, "CUBRID"}, {2401, "CUBRID"}, {2500, "POSTGRESQL"}, {2501, "POSTGRESQL"},
	{2600, "CASSANDRA"}, {2601, "CASSANDRA"}, {2650, "MONGO"}, {2651, "MONGO"}, {2800, "CLICK_HOUSE"}, {2801, "CLICK_HOUSE"},
	{5000, "INTERNAL_METHOD"}, {5004, "SERVLET"}, {5050, "SPRING"}, {5051, "SPRING_MVC"}, {5053, "SPRING_WEBFLUX"},
	{5071, "SPRING_BEAN"}, {5500, "IBATIS"}, {5510, "MYBATIS"}, {6001, "THREAD_ASYNC"}, {6050, "DBCP"}, {6052, "DBCP2"},
	{6060, "HIKARICP"}, {8050, "MEMCACHED"}, {8100, "ARCUS"}, {8200, "REDIS"}, {8201, "REDIS_LETTUCE"},
	{8203, "REDIS_REDISSON"}, {8300, "RABBITMQ_CLIENT"}, {8310, "ACTIVEMQ_CLIENT"}, {8400, "ROCKETMQ_CLIENT"},
	{8660, "KAFKA_CLIENT"}, {8800, "HBASE_CLIENT"}, {9050, "HTTP_CLIENT_3"}, {9052, "HTTP_CLIENT_4"},
	{9055, "JDK_HTTPURLCONNECTOR"}, {9058, "OK_HTTP_CLIENT"}, {9062, "HTTP_CLIENT_5"}, {9140, "REST_TEMPLATE"},
	{9152, "NETTY_HTTP"}, {9160, "GRPC"}, {9204, "ELASTICSEARCH_HIGHLEVEL_CLIENT"}, {9401, "GO_HTTP_CLIENT"},
}

func TestBuiltinHasEverySheetServiceType(t *testing.T) {
	tb := Builtin()
	for _, s := range sheetTypes {
		got, ok := tb.Lookup(s.code)
		if !ok {
			t.Errorf("code %d (%s) is missing", s.code, s.name)
			continue
		}
		if !strings.HasPrefix(got.Name, s.name) {
			t.Errorf("code %d is %s, the fact sheet says %s", s.code, got.Name, s.name)
		}
	}
}

// sheetAnnotations lists every AnnotationKey of section 5 of the fact sheet.
var sheetAnnotations = map[int32]string{
	12: "API", 13: "API-METADATA", 14: "RETURN_DATA", 20: "SQL-ID", 21: "SQL", 22: "SQL-METADATA",
	23: "SQL-PARAM", 24: "SQL-BindValue", 25: "SQL-UID", 30: "STRING_ID", 40: "http.url", 41: "http.param",
	42: "http.entity", 45: "http.cookie", 46: "http.status.code", 47: "http.req.header",
	48: "http.internal.display", 49: "http.io", 50: "http.method", 51: "http.secure", 55: "http.resp.header",
	100: "message.queue.url",
	-1:  "args[0]", -2: "args[1]", -3: "args[2]", -4: "args[3]", -5: "args[4]", -6: "args[5]", -7: "args[6]",
	-8: "args[7]", -9: "args[8]", -10: "args[9]", -11: "args[N]",
	-30: "cached_args[0]", -31: "cached_args[1]", -32: "cached_args[2]", -33: "cached_args[3]",
	-34: "cached_args[4]", -35: "cached_args[5]", -36: "cached_args[6]", -37: "cached_args[7]",
	-38: "cached_args[8]", -39: "cached_args[9]", -40: "cached_args[N]",
	-50: "Exception", -51: "ExceptionClass", -52: "ExceptionChainId", -100: "Asynchronous Invocation",
	130: "rabbitmq.", 131: "rabbitmq.", 132: "rabbitmq.", 133: "rabbitmq.",
	140: "kafka.topic", 141: "kafka.partition", 142: "kafka.offset", 143: "kafka.batch", 144: "kafka.header",
	145: "kafka.consumer.group",
	150: "MONGO-JSON-Data", 151: "Collection-Info", 160: "grpc.status", 173: "es.dsl", 300: "PROXY_HTTP_HEADER",
	310: "redis.io", 320: "hbase.", 321: "hbase.",
}

func TestBuiltinHasEverySheetAnnotationKey(t *testing.T) {
	tb := Builtin()
	for code, name := range sheetAnnotations {
		got, ok := tb.Annotation(code)
		if !ok {
			t.Errorf("annotation key %d (%s) is missing", code, name)
			continue
		}
		// A trailing dot marks a family the sheet names only by prefix.
		if strings.HasSuffix(name, ".") && !strings.HasPrefix(got.Name, name) || !strings.HasSuffix(name, ".") && got.Name != name {
			t.Errorf("annotation key %d is %q, the fact sheet says %q", code, got.Name, name)
		}
	}
	// viewInRecordSet as Pinpoint's AnnotationKey defines it.
	view := map[int32]bool{12: false, 14: true, 20: false, 21: true, 24: true, 40: false, 41: true, 46: true, 48: false, -1: false, -50: true, -100: true, 300: true, 310: false}
	for code, want := range view {
		if got, _ := tb.Annotation(code); got.ViewInRecordSet != want {
			t.Errorf("annotation key %d viewInRecordSet = %v, want %v", code, got.ViewInRecordSet, want)
		}
	}
	if _, ok := tb.Annotation(901); ok {
		t.Error("annotation 901 is built in, but 900-999 belong to providers")
	}
}

// TestBuiltinConsistency checks invariants of every built-in row.
func TestBuiltinConsistency(t *testing.T) {
	tb := Builtin()
	types := tb.Types()
	if len(types) < len(sheetTypes) {
		t.Fatalf("only %d built-in types", len(types))
	}
	for i, st := range types {
		if i > 0 && types[i-1].Code >= st.Code {
			t.Errorf("Types() not sorted at %d", st.Code)
		}
		if st.Name == "" || st.Desc == "" || st.Provider != "" {
			t.Errorf("built-in %+v: empty name/desc or a provider", st)
		}
		if st.Category() == Undefined && st.Code != -1 {
			t.Errorf("built-in %s (%d) is outside every category range", st.Name, st.Code)
		}
		// Pinpoint's own python provider is the one built-in code in the
		// private ranges; any other would block a user's provider.
		if inRanges(st.Code, typeRanges()) && st.Code != 9900 {
			t.Errorf("built-in %s (%d) sits in a range reserved for type providers", st.Name, st.Code)
		}
		if st.Matcher.Kind != MatchExact && st.Matcher.Code != 0 {
			t.Errorf("built-in %s has a matcher code without type exact", st.Name)
		}
	}
	for _, k := range tb.Annotations() {
		if k.Name == "" || inRanges(k.Code, annotationRanges()) {
			t.Errorf("built-in annotation key %+v: empty name or in the provider range", k)
		}
	}
	if len(tb.Custom()) != 0 || len(tb.CustomAnnotations()) != 0 {
		t.Error("the built-in table has custom entries")
	}
	if Builtin() != tb {
		t.Error("Builtin() builds a new table per call")
	}
}

// TestZeroTable: a Table nobody built reads as the built-in one instead of
// naming every code UNKNOWN.
func TestZeroTable(t *testing.T) {
	var zero Table
	var nilTable *Table
	for _, tb := range []*Table{&zero, nilTable} {
		if got := tb.Type(1010).Name; got != "TOMCAT" {
			t.Errorf("Type(1010) on %v = %s", tb, got)
		}
		if k, ok := tb.Annotation(20); !ok || k.Name != "SQL-ID" {
			t.Errorf("Annotation(20) = %+v, %v", k, ok)
		}
		if tb.Custom() != nil {
			t.Error("Custom() of an empty table is not nil")
		}
	}
}

// TestConcurrentReads runs lookups from many goroutines; with -race it
// proves the table needs no locking.
func TestConcurrentReads(t *testing.T) {
	custom, err := Load([]string{"testdata/good"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for code := int32(-100); code < 10000; code += 7 {
				for _, tb := range []*Table{Builtin(), custom} {
					_ = tb.Type(code).SourceType()
					_, _ = tb.Annotation(code)
				}
			}
			_ = custom.Custom()
		}()
	}
	wg.Wait()
}

func TestWithPersistedKeepsEarlierCustomTypes(t *testing.T) {
	first, err := Load([]string{"testdata/good"})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Custom()) == 0 {
		t.Fatal("testdata/good defines no custom type")
	}
	saved, err := first.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Second run: the provider file is no longer configured.
	restored, err := WithPersisted(Builtin(), saved)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range first.Custom() {
		got, ok := restored.Lookup(st.Code)
		if !ok || got.Name != st.Name || got.Category() != st.Category() {
			t.Errorf("custom type %d %s lost after restart: %+v %v", st.Code, st.Name, got, ok)
		}
	}
	// Second run with the same file again: no duplicate error, same table.
	again, err := WithPersisted(first, saved)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Custom()) != len(first.Custom()) {
		t.Fatalf("custom types %d, want %d", len(again.Custom()), len(first.Custom()))
	}
}
