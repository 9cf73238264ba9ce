package servicetype

import (
	"fmt"
	"strconv"
)

// The built-in definitions. Every code of docs/PINPOINT-PROTOCOL.md section 5
// is here, plus the siblings Pinpoint defines next to them (the *_INTERNAL /
// *_METHOD types the same agents emit). Names, descs and properties follow
// Pinpoint's own definitions (commons ServiceType / AnnotationKey and the
// plugins' type providers), looked up for this table; rows marked
// "unverified" could not be checked against a Pinpoint source and follow the
// pattern of their neighbours.

// prop is a set of service type properties, to keep the rows short.
type prop uint8

const (
	pTerminal prop = 1 << iota
	pQueue
	pRecord // RECORD_STATISTICS
	pDest   // INCLUDE_DESTINATION_ID
	pAlias
)

type typeRow struct {
	code    int32
	name    string
	desc    string // "" = same as name
	props   prop
	matcher Matcher
}

func matchExact(code int32) Matcher { return Matcher{Kind: MatchExact, Code: code} }

// builtinTypeRows is a function, not a package variable, so nothing can
// modify the rows after the table is built.
func builtinTypeRows() []typeRow {
	const (
		db    = pTerminal | pDest           // a database node
		query = pTerminal | pRecord | pDest // a database call (xxx_EXECUTE_QUERY)
		cache = pTerminal | pRecord
		mq    = pQueue | pRecord
	)
	matchArgs := Matcher{Kind: MatchArgs}
	return []typeRow{
		// Internal 0-999.
		{code: -1, name: "UNDEFINED", props: pTerminal},
		{code: 1, name: "UNKNOWN", props: pRecord}, // callee without an agent
		{code: 2, name: "USER", props: pRecord},    // the virtual caller of root spans
		{code: 3, name: "UNKNOWN_GROUP", props: pRecord},
		{code: 5, name: "TEST"},
		{code: 7, name: "COLLECTOR"},
		{code: 100, name: "ASYNC"}, // first event of async work

		// Server 1000-1999.
		{code: 1000, name: "STAND_ALONE", props: pRecord},
		{code: 1001, name: "JAVA", props: pRecord}, // unverified (fact sheet only)
		{code: 1005, name: "TEST_STAND_ALONE", props: pRecord},
		{code: 1007, name: "UNAUTHORIZED", props: pRecord},
		{code: 1010, name: "TOMCAT", props: pRecord},
		{code: 1011, name: "TOMCAT_METHOD"},
		{code: 1030, name: "JETTY", props: pRecord},
		{code: 1031, name: "JETTY_METHOD"},
		{code: 1120, name: "UNDERTOW", props: pRecord}, // unverified properties
		{code: 1121, name: "UNDERTOW_METHOD"},
		{code: 1130, name: "GRPC_SERVER", props: pRecord},
		{code: 1140, name: "REACTOR_NETTY", props: pRecord},
		{code: 1141, name: "REACTOR_NETTY_INTERNAL", desc: "REACTOR_NETTY"},
		{code: 1210, name: "SPRING_BOOT", props: pRecord},
		{code: 1400, name: "NODE", props: pRecord},
		{code: 1401, name: "NODE_METHOD", desc: "NODE"},
		{code: 1500, name: "PHP", props: pRecord},
		{code: 1501, name: "PHP_METHOD", matcher: matchArgs},
		{code: 1700, name: "PYTHON", props: pRecord},
		{code: 1701, name: "PYTHON_METHOD", matcher: matchArgs},
		{code: 1800, name: "GO", props: pRecord},
		{code: 1801, name: "GO_FUNCTION", matcher: matchArgs},

		// Database 2000-2999: each database has a node type and a query type.
		{code: 2050, name: "UNKNOWN_DB", props: db},
		{code: 2051, name: "UNKNOWN_DB_EXECUTE_QUERY", desc: "UNKNOWN_DB", props: query},
		{code: 2100, name: "MYSQL", props: db},
		{code: 2101, name: "MYSQL_EXECUTE_QUERY", desc: "MYSQL", props: query},
		{code: 2150, name: "MARIADB", props: db},
		{code: 2151, name: "MARIADB_EXECUTE_QUERY", desc: "MARIADB", props: query},
		{code: 2200, name: "MSSQL", desc: "MSSQLSERVER", props: db},
		{code: 2201, name: "MSSQL_EXECUTE_QUERY", desc: "MSSQLSERVER", props: query},
		{code: 2250, name: "MSSQL_JDBC", props: db},
		{code: 2251, name: "MSSQL_JDBC_QUERY", desc: "MSSQLSERVER", props: query},
		{code: 2300, name: "ORACLE", props: db},
		{code: 2301, name: "ORACLE_EXECUTE_QUERY", desc: "ORACLE", props: query},
		{code: 2400, name: "CUBRID", props: db},
		{code: 2401, name: "CUBRID_EXECUTE_QUERY", desc: "CUBRID", props: query},
		{code: 2500, name: "POSTGRESQL", props: db},
		{code: 2501, name: "POSTGRESQL_EXECUTE_QUERY", desc: "POSTGRESQL", props: query},
		{code: 2600, name: "CASSANDRA", props: db},
		{code: 2601, name: "CASSANDRA_EXECUTE_QUERY", desc: "CASSANDRA", props: query},
		{code: 2650, name: "MONGO", props: db},
		{code: 2651, name: "MONGO_EXECUTE_QUERY", desc: "MONGO", props: query},
		{code: 2800, name: "CLICK_HOUSE", props: db},                                       // unverified properties
		{code: 2801, name: "CLICK_HOUSE_EXECUTE_QUERY", desc: "CLICK_HOUSE", props: query}, // unverified properties

		// Library 5000-7999: in-process work, no node of its own.
		{code: 5000, name: "INTERNAL_METHOD"},
		{code: 5004, name: "SERVLET"},
		{code: 5050, name: "SPRING"},
		{code: 5051, name: "SPRING_MVC", desc: "SPRING"},
		{code: 5053, name: "SPRING_WEBFLUX"}, // unverified properties
		{code: 5061, name: "SPRING_ORM_IBATIS", desc: "SPRING"},
		{code: 5071, name: "SPRING_BEAN"},
		{code: 5500, name: "IBATIS"},
		{code: 5510, name: "MYBATIS"},
		{code: 6001, name: "THREAD_ASYNC"},
		{code: 6050, name: "DBCP"},
		{code: 6052, name: "DBCP2"},
		{code: 6060, name: "HIKARICP"},
		{code: 6600, name: "EXPRESS"},
		{code: 6610, name: "KOA"},
		{code: 6620, name: "HAPI"},
		{code: 6630, name: "RESTIFY"},

		// Cache 8000-8299.
		{code: 8050, name: "MEMCACHED", props: cache},
		{code: 8051, name: "MEMCACHED_FUTURE_GET", desc: "MEMCACHED", props: pTerminal},
		{code: 8100, name: "ARCUS", props: cache},
		{code: 8200, name: "REDIS", props: cache},
		{code: 8201, name: "REDIS_LETTUCE", desc: "REDIS", props: cache, matcher: matchExact(310)},
		{code: 8202, name: "IOREDIS", desc: "REDIS"},
		{code: 8203, name: "REDIS_REDISSON", desc: "REDIS", props: cache, matcher: matchExact(-1)},
		{code: 8204, name: "REDIS_REDISSON_INTERNAL", desc: "REDIS"},
		{code: 8205, name: "REDIS_REDISSON_REACTIVE", desc: "REDIS", matcher: matchExact(-1)},

		// Message broker 8300-8799.
		{code: 8300, name: "RABBITMQ_CLIENT", props: mq},
		{code: 8301, name: "RABBITMQ_CLIENT_INTERNAL", desc: "RABBITMQ_CLIENT"},
		{code: 8310, name: "ACTIVEMQ_CLIENT", props: mq, matcher: matchExact(100)},
		{code: 8311, name: "ACTIVEMQ_CLIENT_INTERNAL", desc: "ACTIVEMQ_CLIENT", matcher: matchArgs},
		{code: 8400, name: "ROCKETMQ_CLIENT", props: mq},
		{code: 8401, name: "ROCKETMQ_CLIENT_INTERNAL", desc: "ROCKETMQ_CLIENT"},
		{code: 8660, name: "KAFKA_CLIENT", props: mq},
		{code: 8661, name: "KAFKA_CLIENT_INTERNAL", desc: "KAFKA_CLIENT"},

		// HBase 8800-8899.
		{code: 8800, name: "HBASE_CLIENT", props: pTerminal | pRecord},

		// RPC 9000-9999: clients calling another node.
		{code: 9050, name: "HTTP_CLIENT_3", desc: "HTTP_CLIENT", props: pRecord},
		{code: 9051, name: "HTTP_CLIENT_3_INTERNAL", desc: "HTTP_CLIENT"},
		{code: 9052, name: "HTTP_CLIENT_4", desc: "HTTP_CLIENT", props: pRecord},
		{code: 9053, name: "HTTP_CLIENT_4_INTERNAL", desc: "HTTP_CLIENT"},
		{code: 9055, name: "JDK_HTTPURLCONNECTOR", desc: "JDK_HTTPCONNECTOR", props: pRecord},
		{code: 9058, name: "OK_HTTP_CLIENT", props: pRecord},
		{code: 9059, name: "OK_HTTP_CLIENT_INTERNAL", desc: "OK_HTTP_CLIENT"},
		{code: 9062, name: "HTTP_CLIENT_5", desc: "HTTP_CLIENT", props: pRecord, matcher: matchExact(40)},
		{code: 9063, name: "HTTP_CLIENT_5_INTERNAL", desc: "HTTP_CLIENT", matcher: matchExact(48)},
		{code: 9140, name: "REST_TEMPLATE"},
		{code: 9150, name: "NETTY"},
		{code: 9151, name: "NETTY_INTERNAL"},
		{code: 9152, name: "NETTY_HTTP", props: pRecord},
		{code: 9160, name: "GRPC", props: pRecord},
		{code: 9161, name: "GRPC_INTERNAL"},
		{code: 9162, name: "GRPC_SERVER_INTERNAL"},
		{code: 9203, name: "ELASTICSEARCH"},
		{code: 9204, name: "ELASTICSEARCH_HIGHLEVEL_CLIENT", desc: "ELASTICSEARCH", props: pAlias},
		{code: 9401, name: "GO_HTTP_CLIENT", props: pRecord, matcher: matchArgs},
		{code: 9700, name: "PHP_REMOTE_METHOD", props: pRecord, matcher: matchArgs},
		// Pinpoint's own python provider sits in the private RPC range, so a
		// user provider cannot take 9900.
		{code: 9900, name: "PYTHON_REMOTE_METHOD", props: pRecord, matcher: matchArgs},
	}
}

type annotationRow struct {
	code int32
	name string
	view bool // VIEW_IN_RECORD_SET
}

func builtinAnnotationRows() []annotationRow {
	rows := []annotationRow{
		{12, "API", false}, // API string when apiId is 0
		{13, "API-METADATA", false},
		{14, "RETURN_DATA", true},
		{20, "SQL-ID", false}, // intStringStringValue{sqlId, output params, bind values}
		{21, "SQL", true},
		{22, "SQL-METADATA", false},
		{23, "SQL-PARAM", false},
		{24, "SQL-BindValue", true},
		{25, "SQL-UID", false}, // unverified viewInRecordSet; bytesStringStringValue{sqlUid, ...}
		{30, "STRING_ID", false},
		{40, "http.url", false},
		{41, "http.param", true},
		{42, "http.entity", true},
		{45, "http.cookie", true},
		{46, "http.status.code", true},
		{47, "http.req.header", true},
		{48, "http.internal.display", false},
		{49, "http.io", true},
		{50, "http.method", false},     // unverified viewInRecordSet
		{51, "http.secure", false},     // unverified viewInRecordSet
		{55, "http.resp.header", true}, // unverified viewInRecordSet (as http.req.header)
		{100, "message.queue.url", false},
		{-11, "args[N]", false},
		{-40, "cached_args[N]", false},
		{-50, "Exception", true},
		{-51, "ExceptionClass", false},
		{-52, "ExceptionChainId", false}, // unverified viewInRecordSet; = PException.exceptionId
		{-100, "Asynchronous Invocation", true},
		{-9999, "UNKNOWN", false},
		{10015, "API-TAG", false},
		{130, "rabbitmq.exchange", true},
		{131, "rabbitmq.routingkey", true},
		{132, "rabbitmq.properties", false},
		{133, "rabbitmq.body", false},
		{140, "kafka.topic", true},
		{141, "kafka.partition", true},
		{142, "kafka.offset", true},
		{143, "kafka.batch", true},
		{144, "kafka.header", true},         // unverified viewInRecordSet
		{145, "kafka.consumer.group", true}, // unverified viewInRecordSet
		{150, "MONGO-JSON-Data", false},
		{151, "Collection-Info", true},
		{160, "grpc.status", true},
		{173, "es.dsl", true},
		{176, "es.version", true},
		{300, "PROXY_HTTP_HEADER", true},
		{310, "redis.io", false},
		{320, "hbase.client.params", true},
		{321, "hbase.table.name", true},
	}
	// args[0..9] are -1..-10 and cached_args[0..9] are -30..-39.
	for i := int32(0); i < 10; i++ {
		rows = append(rows,
			annotationRow{-1 - i, "args[" + strconv.Itoa(int(i)) + "]", false},
			annotationRow{-30 - i, "cached_args[" + strconv.Itoa(int(i)) + "]", false},
		)
	}
	return rows
}

// newBuiltin builds the built-in table, rejecting duplicate codes or names
// so a bad row fails the tests instead of silently shadowing another.
func newBuiltin() (*Table, error) {
	rows := builtinTypeRows()
	annRows := builtinAnnotationRows()
	t := &Table{
		types:           make(map[int32]Type, len(rows)),
		typeNames:       make(map[string]int32, len(rows)),
		annotations:     make(map[int32]AnnotationKey, len(annRows)),
		annotationNames: make(map[string]int32, len(annRows)),
	}
	for _, r := range rows {
		st := Type{
			Code:                 r.code,
			Name:                 r.name,
			Desc:                 r.desc,
			Terminal:             r.props&pTerminal != 0,
			Queue:                r.props&pQueue != 0,
			RecordStatistics:     r.props&pRecord != 0,
			IncludeDestinationID: r.props&pDest != 0,
			Alias:                r.props&pAlias != 0,
			Matcher:              r.matcher,
		}
		if st.Desc == "" {
			st.Desc = st.Name
		}
		if prev, dup := t.types[st.Code]; dup {
			return nil, fmt.Errorf("servicetype: built-in service type %s reuses code %d of %s", st.Name, st.Code, prev.Name)
		}
		if prev, dup := t.typeNames[st.Name]; dup {
			return nil, fmt.Errorf("servicetype: built-in service type %d reuses name %s of %d", st.Code, st.Name, prev)
		}
		t.types[st.Code] = st
		t.typeNames[st.Name] = st.Code
	}
	for _, r := range annRows {
		k := AnnotationKey{Code: r.code, Name: r.name, ViewInRecordSet: r.view}
		if prev, dup := t.annotations[k.Code]; dup {
			return nil, fmt.Errorf("servicetype: built-in annotation key %s reuses code %d of %s", k.Name, k.Code, prev.Name)
		}
		if prev, dup := t.annotationNames[k.Name]; dup {
			return nil, fmt.Errorf("servicetype: built-in annotation key %d reuses name %s of %d", k.Code, k.Name, prev)
		}
		t.annotations[k.Code] = k
		t.annotationNames[k.Name] = k.Code
	}
	return t, nil
}
