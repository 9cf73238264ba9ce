package otlp

import (
	"testing"

	"github.com/apmkit/apmkit/io/lprecord"
)

func metricsOf(t *testing.T, rows string) (string, int) {
	t.Helper()
	ms, drops := lprecord.DecodeMetrics([]byte(rows))
	if drops.Total() != 0 {
		t.Fatal(drops.Err())
	}
	req, empty := Metrics(ms)
	return metricsText(req.ResourceMetrics), empty
}

// Expected values written by hand from the rows and docs/OTLP.md.
func TestJVMMetrics(t *testing.T) {
	got, empty := metricsOf(t, `pinpoint_jvm,agentVersion=1.5.0,agent_id=frontend-01,agent_name=frontend-01,container=true,env=prod,host=vm,hostname=vm,ip=192.0.2.2,jvm_gc_type=CMS,pid=4141,service=frontend CollectInterval=5000i,JvmMemoryHeapUsed=8536064i,JvmMemoryHeapMax=11730944i,JvmGcOldCount=3i,JvmGcOldTime=12i,JvmCpuLoad=0.25,TransactionSampledNew=100i,ActiveTraceFast=2i,TotalThreadCount=8i,PoolOldGenUsed=0.5 1795417124915000000
pinpoint_jvm,agent_id=frontend-01,agent_name=frontend-01,env=prod,host=vm,service=frontend JvmMemoryHeapUsed=9000000i 1795417129915000000
pinpoint_jvm,agent_id=frontend-01,host=vm,service=frontend CollectInterval=5000i 1795417129915000000
`)
	if empty != 1 {
		t.Errorf("empty = %d, want 1 (the sample with only CollectInterval)", empty)
	}
	diff(t, got, `
resource service.name="frontend" service.instance.id="frontend-01" host.name="vm" pinpoint.agent_name="frontend-01" env="prod"
jvm.memory.used[By] sum(CUMULATIVE,monotonic=false) 8536064 @1795417124915000000 jvm.memory.type="heap"
jvm.memory.used[By] sum(CUMULATIVE,monotonic=false) 9000000 @1795417129915000000 jvm.memory.type="heap"
jvm.memory.limit[By] sum(CUMULATIVE,monotonic=false) 11730944 @1795417124915000000 jvm.memory.type="heap"
process.cpu.utilization[1] gauge 0.25 @1795417124915000000
jvm.thread.count[{thread}] sum(CUMULATIVE,monotonic=false) 8 @1795417124915000000
pinpoint.jvm.memory.pool.utilization[1] gauge 0.5 @1795417124915000000 jvm.memory.pool.name="old_gen"
pinpoint.transaction.count[{transaction}] sum(DELTA,monotonic=true) 100 @1795417124915000000 from 1795417119915000000 pinpoint.transaction.type="sampled_new"
pinpoint.active_trace.count[{trace}] gauge 2 @1795417124915000000 pinpoint.active_trace.speed="fast"
pinpoint.jvm.gc.count[{collection}] sum(CUMULATIVE,monotonic=true) 3 @1795417124915000000 pinpoint.jvm.gc.generation="old" pinpoint.jvm.gc.type="CMS"
pinpoint.jvm.gc.time[ms] sum(CUMULATIVE,monotonic=true) 12 @1795417124915000000 pinpoint.jvm.gc.generation="old" pinpoint.jvm.gc.type="CMS"`)
}

// 15 requests, 5 of them failed: the 10 others and the 5 failed are two data points.
func TestURIHistogram(t *testing.T) {
	got, _ := metricsOf(t, `pinpoint_uri,agent_id=frontend-01,host=vm,service=frontend,uri=/error total_count=15i,failed_count=5i,total_elapsed_ms=8100i,max_ms=2400i,failed_elapsed_ms=81i,failed_max_ms=24i,bucket_lt_100ms=12i,bucket_100_300ms=0i,bucket_300_500ms=0i,bucket_500_1000ms=0i,bucket_1000_3000ms=3i,bucket_3000_5000ms=0i,bucket_5000_8000ms=0i,bucket_ge_8000ms=0i,failed_bucket_lt_100ms=5i,failed_bucket_100_300ms=0i,failed_bucket_300_500ms=0i,failed_bucket_500_1000ms=0i,failed_bucket_1000_3000ms=0i,failed_bucket_3000_5000ms=0i,failed_bucket_5000_8000ms=0i,failed_bucket_ge_8000ms=0i 1795417110000000000
pinpoint_uri,agent_id=frontend-01,host=vm,service=frontend,uri=/ok total_count=2i,failed_count=0i,total_elapsed_ms=9000i,max_ms=8500i,bucket_lt_100ms=1i,bucket_ge_8000ms=1i 1795417110000000000
`)
	diff(t, got, `
resource service.name="frontend" service.instance.id="frontend-01" host.name="vm"
http.server.request.duration[s] histogram(DELTA) 1795417110000000000..1795417140000000000 count=10 sum=8.019 max=? buckets=[7 0 0 0 3 0 0 0] bounds=[0.1 0.3 0.5 1 3 5 8] http.route="/error"
http.server.request.duration[s] histogram(DELTA) 1795417110000000000..1795417140000000000 count=5 sum=0.081 max=0.024 buckets=[5 0 0 0 0 0 0 0] bounds=[0.1 0.3 0.5 1 3 5 8] http.route="/error" error.type="_OTHER"
http.server.request.duration[s] histogram(DELTA) 1795417110000000000..1795417140000000000 count=2 sum=9 max=8.5 buckets=[1 0 0 0 0 0 0 1] bounds=[0.1 0.3 0.5 1 3 5 8] http.route="/ok"`)
}

func TestDataSourceAndAgentMetrics(t *testing.T) {
	got, empty := metricsOf(t, `pinpoint_datasource,agent_id=a1,database_name=demo,host=vm,pool_id=1,service=shop,service_type=HIKARICP,url=jdbc:mysql://db:3306/demo ActiveConnectionSize=3i,MaxConnectionSize=10i 1000
pinpoint_agent,agentVersion=1.5.0,agent_id=frontend-01,container=true,host=vm,hostname=vm,ip=192.0.2.2,service=frontend,service_type=GO,vm_version=go1.26.8 start_time=1795417119878i,pid=4141i,server_info="Go Application",jvm_gc_type="CMS",end_timestamp=1795417160000i,end_status=0i 1795417160000000000
`)
	if empty != 0 {
		t.Errorf("empty = %d", empty)
	}
	diff(t, got, `
resource service.name="shop" service.instance.id="a1" host.name="vm"
db.client.connection.count[{connection}] sum(CUMULATIVE,monotonic=false) 3 @1000 db.client.connection.state="used" db.client.connection.pool.name="1" db.namespace="demo" pinpoint.datasource.url="jdbc:mysql://db:3306/demo" pinpoint.service_type="HIKARICP"
db.client.connection.max[{connection}] sum(CUMULATIVE,monotonic=false) 10 @1000 db.client.connection.pool.name="1" db.namespace="demo" pinpoint.datasource.url="jdbc:mysql://db:3306/demo" pinpoint.service_type="HIKARICP"
resource service.name="frontend" service.instance.id="frontend-01" host.name="vm" telemetry.sdk.language="go"
pinpoint.agent.start_time[ms] gauge 1795417119878 @1795417160000000000 pinpoint.agent_version="1.5.0" pinpoint.container="true" host.ip="192.0.2.2" pinpoint.service_type="GO" process.runtime.version="go1.26.8" process.pid=4141 pinpoint.server_info="Go Application" pinpoint.jvm.gc.type="CMS"
pinpoint.agent.end_time[ms] gauge 1795417160000 @1795417160000000000 pinpoint.agent_version="1.5.0" pinpoint.container="true" host.ip="192.0.2.2" pinpoint.service_type="GO" process.runtime.version="go1.26.8" process.pid=4141 pinpoint.server_info="Go Application" pinpoint.jvm.gc.type="CMS" pinpoint.agent.end_status=0`)
}
