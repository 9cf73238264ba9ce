package gen

import "github.com/apmkit/apmkit/inputs/pinpoint/pb"

// Role is the application an emulated agent belongs to. Linked transactions go from a Web
// agent (the caller) to an API agent (the callee), so a trace spans two applications the way
// a storefront calling an inventory service does.
type Role int

const (
	Web Role = iota // ppload-web: the Tomcat front end that receives user requests
	API             // ppload-api: the service the front end calls over HTTP
)

// App is the applicationName of the role's agents; both pass Pinpoint's id rules
// ([a-zA-Z0-9._-], <= 24 characters).
func (r Role) App() string {
	if r == API {
		return "ppload-api"
	}
	return "ppload-web"
}

// Metadata ids. Pinpoint numbers them per agent run from 1, so both roles use the same
// numbers for different texts: a collector that resolves an id against the wrong agent
// shows the other application's names, which the catalogs below make visible.
const (
	apiServletProcess  int32 = 1 // entry span
	apiHostValve       int32 = 2 // TOMCAT_METHOD
	apiDispatcher      int32 = 3 // SPRING_MVC
	apiController      int32 = 4
	apiService         int32 = 5
	apiExecuteQuery    int32 = 6 // MYSQL_EXECUTE_QUERY
	apiRedisGet        int32 = 7 // REDIS
	apiHTTPExecute     int32 = 8 // HTTP_CLIENT_4
	apiAsyncInvocation int32 = 9 // ASYNC: the first event of async work
	apiAsyncTask       int32 = 10

	sqlSelect int32 = 1
	sqlUpdate int32 = 2

	strSQLException int32 = 1 // exception class names are string metadata
)

// Pinpoint's PApiMetaData.type values used here.
const (
	apiTypeDefault    = 0
	apiTypeWebRequest = 100
	apiTypeInvocation = 200
)

// Catalog is the metadata one agent run sends before any span that references it.
type Catalog struct {
	APIs    []*pb.PApiMetaData
	SQLs    []*pb.PSqlMetaData
	Strings []*pb.PStringMetaData
}

// roleNames are the texts that differ between the two applications.
type roleNames struct {
	controller, service, task, selectSQL, updateSQL string
}

// namesOf is a function, not a table, so no package-level state can be changed.
func namesOf(r Role) roleNames {
	if r == API {
		return roleNames{
			controller: "com.shop.api.StockController.check(long sku)",
			service:    "com.shop.api.StockService.available(long warehouse, long sku)",
			task:       "com.shop.api.ReserveTask.run()",
			selectSQL:  "SELECT qty FROM stock WHERE warehouse_id = ? AND sku = ?",
			updateSQL:  "UPDATE stock SET reserved = reserved + 1 WHERE warehouse_id = ? AND sku = ?",
		}
	}
	return roleNames{
		controller: "com.shop.web.OrderController.getOrder(long orderId)",
		service:    "com.shop.web.OrderService.loadOrder(long orderId, long customerId)",
		task:       "com.shop.web.AuditTask.run()",
		selectSQL:  "SELECT id, status, total FROM orders WHERE id = ? AND customer_id = ?",
		updateSQL:  "UPDATE orders SET viewed_at = NOW() WHERE id = ? AND customer_id = ?",
	}
}

// CatalogFor returns the metadata of an agent of role r. It returns fresh messages, so
// callers may hand them to gRPC concurrently.
func CatalogFor(r Role) Catalog {
	n := namesOf(r)
	api := func(id int32, info string, line, typ int32) *pb.PApiMetaData {
		return &pb.PApiMetaData{ApiId: id, ApiInfo: info, Line: line, Type: typ}
	}
	return Catalog{
		APIs: []*pb.PApiMetaData{
			api(apiServletProcess, "Tomcat Servlet Process", 0, apiTypeWebRequest),
			api(apiHostValve, "org.apache.catalina.core.StandardHostValve.invoke(org.apache.catalina.connector.Request request, org.apache.catalina.connector.Response response)", 117, apiTypeDefault),
			api(apiDispatcher, "org.springframework.web.servlet.FrameworkServlet.doGet(javax.servlet.http.HttpServletRequest request, javax.servlet.http.HttpServletResponse response)", 897, apiTypeDefault),
			api(apiController, n.controller, 42, apiTypeDefault),
			api(apiService, n.service, 88, apiTypeDefault),
			api(apiExecuteQuery, "com.mysql.cj.jdbc.ClientPreparedStatement.executeQuery()", 1003, apiTypeDefault),
			api(apiRedisGet, "redis.clients.jedis.Jedis.get(java.lang.String key)", 4318, apiTypeDefault),
			api(apiHTTPExecute, "org.apache.http.impl.client.CloseableHttpClient.execute(org.apache.http.client.methods.HttpUriRequest request)", 82, apiTypeDefault),
			api(apiAsyncInvocation, "Asynchronous Invocation", 0, apiTypeInvocation),
			api(apiAsyncTask, n.task, 21, apiTypeDefault),
		},
		SQLs: []*pb.PSqlMetaData{
			{SqlId: sqlSelect, Sql: n.selectSQL},
			{SqlId: sqlUpdate, Sql: n.updateSQL},
		},
		Strings: []*pb.PStringMetaData{
			{StringId: strSQLException, StringValue: "java.sql.SQLTimeoutException"},
		},
	}
}

// Known reports whether the catalog defines each kind of id; tests use it to check that a
// span references nothing its agent has not sent.
func (c Catalog) Known() (apis, sqls, strs map[int32]bool) {
	apis, sqls, strs = map[int32]bool{}, map[int32]bool{}, map[int32]bool{}
	for _, a := range c.APIs {
		apis[a.GetApiId()] = true
	}
	for _, s := range c.SQLs {
		sqls[s.GetSqlId()] = true
	}
	for _, s := range c.Strings {
		strs[s.GetStringId()] = true
	}
	return apis, sqls, strs
}
