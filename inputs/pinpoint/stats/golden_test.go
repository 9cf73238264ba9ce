package stats

import (
	"strconv"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// javaSample is a Java agent sample with every sub-message set and a few values Pinpoint
// marks unavailable with -1: non-heap max (unbounded metaspace), PermGen (Java 17),
// system CPU load, mapped buffer count, and an unlimited pool size.
func javaSample() *pb.PAgentStat {
	return &pb.PAgentStat{
		Timestamp: 1700000010000, CollectInterval: 10000,
		Gc: &pb.PJvmGc{
			Type:              pb.PJvmGcType_JVM_GC_TYPE_G1,
			JvmMemoryHeapUsed: 268435456, JvmMemoryHeapMax: 1073741824,
			JvmMemoryNonHeapUsed: 134217728, JvmMemoryNonHeapMax: -1,
			JvmGcOldCount: 3, JvmGcOldTime: 120,
			JvmGcDetailed: &pb.PJvmGcDetailed{
				JvmGcNewCount: 42, JvmGcNewTime: 310,
				JvmPoolCodeCacheUsed: 0.25, JvmPoolNewGenUsed: 0.5, JvmPoolOldGenUsed: 0.125,
				JvmPoolSurvivorSpaceUsed: 0.75, JvmPoolPermGenUsed: -1, JvmPoolMetaspaceUsed: 0.375,
			},
		},
		CpuLoad: &pb.PCpuLoad{JvmCpuLoad: 0.125, SystemCpuLoad: -1},
		Transaction: &pb.PTransaction{
			SampledNewCount: 10, SampledContinuationCount: 20, UnsampledNewCount: 0,
			UnsampledContinuationCount: 1, SkippedNewCount: 2, SkippedContinuationCount: 3,
		},
		ActiveTrace: &pb.PActiveTrace{Histogram: &pb.PActiveTraceHistogram{
			HistogramSchemaType: 2, ActiveTraceCount: []int32{1, 2, 3, 4},
		}},
		DataSourceList: &pb.PDataSourceList{DataSource: []*pb.PDataSource{
			{Id: 1, ServiceTypeCode: 6060, DatabaseName: "orders",
				Url:                  "jdbc:mysql://app:s3cret@db1:3306/orders?password=s3cret&useSSL=false",
				ActiveConnectionSize: 4, MaxConnectionSize: 20},
			{Id: 2, ServiceTypeCode: 6050, DatabaseName: "orcl",
				Url:                  "jdbc:oracle:thin:scott/tiger@ora1:1521:orcl",
				ActiveConnectionSize: 0, MaxConnectionSize: -1},
		}},
		ResponseTime:   &pb.PResponseTime{Avg: 15, Max: 230},
		Deadlock:       &pb.PDeadlock{Count: 0},
		FileDescriptor: &pb.PFileDescriptor{OpenFileDescriptorCount: 120},
		DirectBuffer:   &pb.PDirectBuffer{DirectCount: 5, DirectMemoryUsed: 1048576, MappedCount: -1, MappedMemoryUsed: 0},
		TotalThread:    &pb.PTotalThread{TotalThreadCount: 57},
		LoadedClass:    &pb.PLoadedClass{LoadedClassCount: 12000, UnloadedClassCount: 7},
	}
}

func TestJavaStatBatch(t *testing.T) {
	c := converterKnowing(t, map[*meta.Sender]*pb.PAgentInfo{javaSender: javaAgentInfo()})
	second := &pb.PAgentStat{
		Timestamp: 1700000020000, CollectInterval: 10000,
		Gc: &pb.PJvmGc{Type: pb.PJvmGcType_JVM_GC_TYPE_G1,
			JvmMemoryHeapUsed: 300000000, JvmMemoryHeapMax: 1073741824,
			JvmMemoryNonHeapUsed: 140000000, JvmMemoryNonHeapMax: -1, JvmGcOldCount: 3, JvmGcOldTime: 120},
		CpuLoad: &pb.PCpuLoad{JvmCpuLoad: -1, SystemCpuLoad: 0.5},
	}
	pts, skipped := c.Stat(javaSender, batchMessage(javaSample(), second))
	assertNothingSkipped(t, skipped)
	assertLines(t, pts, `
pinpoint_jvm,agentVersion=3.0.1,agent_id=order-api-01,agent_name=order-api-01,container=false,host=web-1,hostname=web-1,ip=10.0.0.5,jvm_gc_type=G1,pid=4242,ports=8080,service=order-api CollectInterval=10000i,JvmMemoryHeapUsed=268435456i,JvmMemoryHeapMax=1073741824i,JvmMemoryNonHeapUsed=134217728i,JvmGcOldCount=3i,JvmGcOldTime=120i,GcNewCount=42i,GcNewTime=310i,PoolCodeCacheUsed=0.25,PoolNewGenUsed=0.5,PoolOldGenUsed=0.125,PoolSurvivorSpaceUsed=0.75,PoolMetaspaceUsed=0.375,JvmCpuLoad=0.125,TransactionSampledNew=10i,TransactionSampledContinuation=20i,TransactionUnsampledNew=0i,TransactionUnsampledContinuation=1i,TransactionSkippedNew=2i,TransactionSkippedContinuation=3i,ActiveTraceFast=1i,ActiveTraceNormal=2i,ActiveTraceSlow=3i,ActiveTraceVerySlow=4i,ResponseTimeAvg=15i,ResponseTimeMax=230i,OpenFileDescriptorCount=120i,DirectCount=5i,DirectMemoryUsed=1048576i,MappedMemoryUsed=0i,TotalThreadCount=57i,LoadedClassCount=12000i,UnloadedClassCount=7i,DeadlockCount=0i 1700000010000000000
pinpoint_datasource,agent_id=order-api-01,agent_name=order-api-01,database_name=orders,host=web-1,pool_id=1,service=order-api,service_type=HIKARICP,url=jdbc:mysql://db1:3306/orders?useSSL\=false ActiveConnectionSize=4i,MaxConnectionSize=20i 1700000010000000000
pinpoint_datasource,agent_id=order-api-01,agent_name=order-api-01,database_name=orcl,host=web-1,pool_id=2,service=order-api,service_type=DBCP,url=jdbc:oracle:thin:@ora1:1521:orcl ActiveConnectionSize=0i 1700000010000000000
pinpoint_jvm,agentVersion=3.0.1,agent_id=order-api-01,agent_name=order-api-01,container=false,host=web-1,hostname=web-1,ip=10.0.0.5,jvm_gc_type=G1,pid=4242,ports=8080,service=order-api CollectInterval=10000i,JvmMemoryHeapUsed=300000000i,JvmMemoryHeapMax=1073741824i,JvmMemoryNonHeapUsed=140000000i,JvmGcOldCount=3i,JvmGcOldTime=120i,SystemCpuLoad=0.5 1700000020000000000
`)
}

// A single PAgentStat (the oneof's other sample form) converts like a batch of one.
func TestSingleAgentStat(t *testing.T) {
	c := converterKnowing(t, map[*meta.Sender]*pb.PAgentInfo{javaSender: javaAgentInfo()})
	msg := &pb.PStatMessage{Field: &pb.PStatMessage_AgentStat{AgentStat: &pb.PAgentStat{
		Timestamp: 1700000030000,
		Deadlock:  &pb.PDeadlock{Count: 2},
	}}}
	pts, skipped := c.Stat(javaSender, msg)
	assertNothingSkipped(t, skipped)
	// No gc in the sample: jvm_gc_type comes from the agent's jvmInfo (G1).
	assertLines(t, pts, `
pinpoint_jvm,agentVersion=3.0.1,agent_id=order-api-01,agent_name=order-api-01,container=false,host=web-1,hostname=web-1,ip=10.0.0.5,jvm_gc_type=G1,pid=4242,ports=8080,service=order-api DeadlockCount=2i 1700000030000000000
`)
}

// goSamples are shaped like pinpoint-go-agent 1.5.0's (values from go-agent-async-heavy):
// CMS always, a schema-2 active-trace histogram, no dataSourceList, deadlock, directBuffer,
// loadedClass or jvmGcDetailed; the second sample also lacks fileDescriptor, as when the
// agent cannot inspect its process. Empty transaction and responseTime messages mean 0.
func goSamples() []*pb.PAgentStat {
	return []*pb.PAgentStat{
		{
			Timestamp: 1795417166973, CollectInterval: 5000,
			Gc: &pb.PJvmGc{Type: pb.PJvmGcType_JVM_GC_TYPE_CMS,
				JvmMemoryHeapUsed: 11157504, JvmMemoryHeapMax: 15564800,
				JvmMemoryNonHeapUsed: 1212416, JvmMemoryNonHeapMax: 1212416, JvmGcOldCount: 3, JvmGcOldTime: 6},
			CpuLoad:     &pb.PCpuLoad{JvmCpuLoad: 0.019957256111654685, SystemCpuLoad: 0.04317269076308127},
			Transaction: &pb.PTransaction{SampledContinuationCount: 120},
			ActiveTrace: &pb.PActiveTrace{Histogram: &pb.PActiveTraceHistogram{
				Version: 1, HistogramSchemaType: 2, ActiveTraceCount: []int32{0, 0, 0, 0}}},
			ResponseTime:   &pb.PResponseTime{Avg: 1, Max: 18},
			FileDescriptor: &pb.PFileDescriptor{OpenFileDescriptorCount: 17},
			TotalThread:    &pb.PTotalThread{TotalThreadCount: 8},
		},
		{
			Timestamp: 1795417171973, CollectInterval: 4000,
			Gc: &pb.PJvmGc{Type: pb.PJvmGcType_JVM_GC_TYPE_CMS,
				JvmMemoryHeapUsed: 11182080, JvmMemoryHeapMax: 15564800,
				JvmMemoryNonHeapUsed: 1212416, JvmMemoryNonHeapMax: 1212416},
			CpuLoad:     &pb.PCpuLoad{SystemCpuLoad: 0.41925777331992914},
			Transaction: &pb.PTransaction{},
			ActiveTrace: &pb.PActiveTrace{Histogram: &pb.PActiveTraceHistogram{
				Version: 1, HistogramSchemaType: 2, ActiveTraceCount: []int32{1, 0, 0, 0}}},
			ResponseTime: &pb.PResponseTime{},
			TotalThread:  &pb.PTotalThread{TotalThreadCount: 8},
		},
	}
}

func TestGoStatBatch(t *testing.T) {
	c := converterKnowing(t, map[*meta.Sender]*pb.PAgentInfo{goSender: goAgentInfo()})
	pts, skipped := c.Stat(goSender, batchMessage(goSamples()...))
	assertNothingSkipped(t, skipped)
	assertLines(t, pts, `
pinpoint_jvm,agentVersion=1.5.0,agent_id=backend-01,agent_name=backend-01,container=true,host=vm,hostname=vm,ip=192.0.2.2,jvm_gc_type=CMS,pid=4480,service=backend CollectInterval=5000i,JvmMemoryHeapUsed=11157504i,JvmMemoryHeapMax=15564800i,JvmMemoryNonHeapUsed=1212416i,JvmMemoryNonHeapMax=1212416i,JvmGcOldCount=3i,JvmGcOldTime=6i,JvmCpuLoad=0.019957256111654685,SystemCpuLoad=0.04317269076308127,TransactionSampledNew=0i,TransactionSampledContinuation=120i,TransactionUnsampledNew=0i,TransactionUnsampledContinuation=0i,TransactionSkippedNew=0i,TransactionSkippedContinuation=0i,ActiveTraceFast=0i,ActiveTraceNormal=0i,ActiveTraceSlow=0i,ActiveTraceVerySlow=0i,ResponseTimeAvg=1i,ResponseTimeMax=18i,OpenFileDescriptorCount=17i,TotalThreadCount=8i 1795417166973000000
pinpoint_jvm,agentVersion=1.5.0,agent_id=backend-01,agent_name=backend-01,container=true,host=vm,hostname=vm,ip=192.0.2.2,jvm_gc_type=CMS,pid=4480,service=backend CollectInterval=4000i,JvmMemoryHeapUsed=11182080i,JvmMemoryHeapMax=15564800i,JvmMemoryNonHeapUsed=1212416i,JvmMemoryNonHeapMax=1212416i,JvmGcOldCount=0i,JvmGcOldTime=0i,JvmCpuLoad=0,SystemCpuLoad=0.41925777331992914,TransactionSampledNew=0i,TransactionSampledContinuation=0i,TransactionUnsampledNew=0i,TransactionUnsampledContinuation=0i,TransactionSkippedNew=0i,TransactionSkippedContinuation=0i,ActiveTraceFast=1i,ActiveTraceNormal=0i,ActiveTraceSlow=0i,ActiveTraceVerySlow=0i,ResponseTimeAvg=0i,ResponseTimeMax=0i,TotalThreadCount=8i 1795417171973000000
`)
}

// Stats of an agent whose info apmkit never saw carry the header tags, never fail.
func TestStatWithoutAgentInfo(t *testing.T) {
	for name, c := range map[string]*Converter{
		"empty store": NewConverter(newMemoryStore(t), nil),
		"no store":    NewConverter(nil, nil),
	} {
		t.Run(name, func(t *testing.T) {
			pts, skipped := c.Stat(goSender, batchMessage(&pb.PAgentStat{
				Timestamp:   1795417166973,
				Gc:          &pb.PJvmGc{Type: pb.PJvmGcType_JVM_GC_TYPE_CMS, JvmMemoryHeapUsed: 11157504},
				TotalThread: &pb.PTotalThread{TotalThreadCount: 8},
			}))
			assertNothingSkipped(t, skipped)
			assertLines(t, pts, `
pinpoint_jvm,agent_id=backend-01,agent_name=backend-01,jvm_gc_type=CMS,service=backend JvmMemoryHeapUsed=11157504i,JvmMemoryHeapMax=0i,JvmMemoryNonHeapUsed=0i,JvmMemoryNonHeapMax=0i,JvmGcOldCount=0i,JvmGcOldTime=0i,TotalThreadCount=8i 1795417166973000000
`)
		})
	}
}

func TestURIStat(t *testing.T) {
	c := converterKnowing(t, map[*meta.Sender]*pb.PAgentInfo{goSender: goAgentInfo()})
	msg := uriMessage(
		// What the Go agent sends when nothing failed: an empty failed histogram.
		&pb.PEachUriStat{Uri: "/api/users", Timestamp: 1795417140000,
			TotalHistogram:  &pb.PUriHistogram{Total: 73, Max: 18, Histogram: buckets(72, 0, 0, 0, 0, 0, 0, 0)},
			FailedHistogram: &pb.PUriHistogram{}},
		&pb.PEachUriStat{Uri: "/api/error", Timestamp: 1795417140000,
			TotalHistogram:  &pb.PUriHistogram{Total: 9010, Max: 5200, Histogram: buckets(10, 1, 2, 3, 4, 5, 6, 7)},
			FailedHistogram: &pb.PUriHistogram{Total: 6100, Max: 5200, Histogram: buckets(0, 0, 0, 0, 1, 0, 1, 0)}},
		// No failed histogram at all reads like an empty one.
		&pb.PEachUriStat{Uri: "/api/slow", Timestamp: 1795417170000,
			TotalHistogram: &pb.PUriHistogram{Total: 9010, Max: 902, Histogram: buckets(0, 0, 0, 10, 0, 0, 0, 0)}},
	)
	pts, skipped := c.Stat(goSender, msg)
	assertNothingSkipped(t, skipped)
	assertLines(t, pts, `
pinpoint_uri,agent_id=backend-01,agent_name=backend-01,host=vm,service=backend,uri=/api/users total_count=72i,failed_count=0i,total_elapsed_ms=73i,max_ms=18i,failed_elapsed_ms=0i,failed_max_ms=0i,bucket_lt_100ms=72i,bucket_100_300ms=0i,bucket_300_500ms=0i,bucket_500_1000ms=0i,bucket_1000_3000ms=0i,bucket_3000_5000ms=0i,bucket_5000_8000ms=0i,bucket_ge_8000ms=0i,failed_bucket_lt_100ms=0i,failed_bucket_100_300ms=0i,failed_bucket_300_500ms=0i,failed_bucket_500_1000ms=0i,failed_bucket_1000_3000ms=0i,failed_bucket_3000_5000ms=0i,failed_bucket_5000_8000ms=0i,failed_bucket_ge_8000ms=0i 1795417140000000000
pinpoint_uri,agent_id=backend-01,agent_name=backend-01,host=vm,service=backend,uri=/api/error total_count=38i,failed_count=2i,total_elapsed_ms=9010i,max_ms=5200i,failed_elapsed_ms=6100i,failed_max_ms=5200i,bucket_lt_100ms=10i,bucket_100_300ms=1i,bucket_300_500ms=2i,bucket_500_1000ms=3i,bucket_1000_3000ms=4i,bucket_3000_5000ms=5i,bucket_5000_8000ms=6i,bucket_ge_8000ms=7i,failed_bucket_lt_100ms=0i,failed_bucket_100_300ms=0i,failed_bucket_300_500ms=0i,failed_bucket_500_1000ms=0i,failed_bucket_1000_3000ms=1i,failed_bucket_3000_5000ms=0i,failed_bucket_5000_8000ms=1i,failed_bucket_ge_8000ms=0i 1795417140000000000
pinpoint_uri,agent_id=backend-01,agent_name=backend-01,host=vm,service=backend,uri=/api/slow total_count=10i,failed_count=0i,total_elapsed_ms=9010i,max_ms=902i,failed_elapsed_ms=0i,failed_max_ms=0i,bucket_lt_100ms=0i,bucket_100_300ms=0i,bucket_300_500ms=0i,bucket_500_1000ms=10i,bucket_1000_3000ms=0i,bucket_3000_5000ms=0i,bucket_5000_8000ms=0i,bucket_ge_8000ms=0i,failed_bucket_lt_100ms=0i,failed_bucket_100_300ms=0i,failed_bucket_300_500ms=0i,failed_bucket_500_1000ms=0i,failed_bucket_1000_3000ms=0i,failed_bucket_3000_5000ms=0i,failed_bucket_5000_8000ms=0i,failed_bucket_ge_8000ms=0i 1795417170000000000
`)
}

// The Go agent sends URI stats every 30 s even when there were none: nothing to write.
func TestEmptyURIStat(t *testing.T) {
	pts, skipped := NewConverter(nil, nil).Stat(goSender, uriMessage())
	assertNothingSkipped(t, skipped)
	if len(pts) != 0 {
		t.Errorf("got %d points from an empty PAgentUriStat", len(pts))
	}
}

func TestAgentInfo(t *testing.T) {
	c := NewConverter(nil, nil)
	start := c.AgentInfo(javaSender, javaAgentInfo())
	end := javaAgentInfo()
	end.EndTimestamp, end.EndStatus = 1700000099000, 1
	stop := c.AgentInfo(javaSender, end)
	goStart := c.AgentInfo(goSender, goAgentInfo())

	assertLines(t, []*point.Point{start, stop, goStart}, `
pinpoint_agent,agentVersion=3.0.1,agent_id=order-api-01,agent_name=order-api-01,container=false,host=web-1,hostname=web-1,ip=10.0.0.5,service=order-api,service_type=TOMCAT,vm_version=17.0.9 start_time=1700000000000i,pid=4242i,ports="8080",server_info="Apache Tomcat/9.0.80",jvm_gc_type="G1" 1700000000000000000
pinpoint_agent,agentVersion=3.0.1,agent_id=order-api-01,agent_name=order-api-01,container=false,host=web-1,hostname=web-1,ip=10.0.0.5,service=order-api,service_type=TOMCAT,vm_version=17.0.9 start_time=1700000000000i,pid=4242i,ports="8080",server_info="Apache Tomcat/9.0.80",jvm_gc_type="G1",end_timestamp=1700000099000i,end_status=1i 1700000099000000000
pinpoint_agent,agentVersion=1.5.0,agent_id=backend-01,agent_name=backend-01,container=true,host=vm,hostname=vm,ip=192.0.2.2,service=backend,service_type=GO,vm_version=go1.26.8 start_time=1795417161952i,pid=4480i,server_info="Go Application",jvm_gc_type="CMS" 1795417161952000000
`)
}

// An agent info without serviceType falls back to the header's; without jvmInfo and
// vmVersion those tags and fields are absent rather than empty.
func TestAgentInfoSparse(t *testing.T) {
	p := NewConverter(nil, nil).AgentInfo(goSender, &pb.PAgentInfo{Hostname: "vm"})
	assertLines(t, []*point.Point{p}, `
pinpoint_agent,agent_id=backend-01,agent_name=backend-01,container=false,host=vm,hostname=vm,service=backend,service_type=GO start_time=1795417161952i 1795417161952000000
`)
	if NewConverter(nil, nil).AgentInfo(nil, goAgentInfo()) != nil {
		t.Error("AgentInfo without a sender must return nil")
	}
}

// A data source without type, name or url gets no such tags rather than empty or UNKNOWN_0.
func TestDataSourceSparse(t *testing.T) {
	pts, skipped := NewConverter(nil, nil).Stat(javaSender, batchMessage(&pb.PAgentStat{
		Timestamp:      1700000010000,
		DataSourceList: &pb.PDataSourceList{DataSource: []*pb.PDataSource{{Id: 7, ActiveConnectionSize: 1, MaxConnectionSize: 8}}},
	}))
	// The sample itself has no value: only its data source is written.
	if skipped.Of(NoValues) != 1 || skipped.Total() != 1 {
		t.Errorf("skipped %s, want no_values=1", skipped)
	}
	assertLines(t, pts, `
pinpoint_datasource,agent_id=order-api-01,agent_name=order-api-01,pool_id=7,service=order-api ActiveConnectionSize=1i,MaxConnectionSize=8i 1700000010000000000
`)
}

// Two pools of one URL, database and type (a read and a write pool, say) are two series:
// without pool_id InfluxDB would keep one of them per sample.
func TestDataSourcePoolsOfOneURL(t *testing.T) {
	pool := func(id, active int32) *pb.PDataSource {
		return &pb.PDataSource{Id: id, ServiceTypeCode: 6052, DatabaseName: "d", Url: "jdbc:postgresql://pg1/d", ActiveConnectionSize: active}
	}
	pts, _ := NewConverter(nil, nil).Stat(javaSender, batchMessage(&pb.PAgentStat{
		Timestamp:      1700000010000,
		DataSourceList: &pb.PDataSourceList{DataSource: []*pb.PDataSource{pool(1, 3), pool(2, 5)}},
	}))
	assertLines(t, pts, `
pinpoint_datasource,agent_id=order-api-01,agent_name=order-api-01,database_name=d,pool_id=1,service=order-api,service_type=DBCP2,url=jdbc:postgresql://pg1/d ActiveConnectionSize=3i,MaxConnectionSize=0i 1700000010000000000
pinpoint_datasource,agent_id=order-api-01,agent_name=order-api-01,database_name=d,pool_id=2,service=order-api,service_type=DBCP2,url=jdbc:postgresql://pg1/d ActiveConnectionSize=5i,MaxConnectionSize=0i 1700000010000000000
`)
}

// More pools than the per-message URL memo holds: every url is still its own, stripped.
func TestManyDataSources(t *testing.T) {
	sample := func(ts int64) *pb.PAgentStat {
		s := &pb.PAgentStat{Timestamp: ts, DataSourceList: &pb.PDataSourceList{}}
		for i, db := range []string{"a", "b", "c", "d", "e", "f"} {
			s.DataSourceList.DataSource = append(s.DataSourceList.DataSource, &pb.PDataSource{
				Id: int32(i + 1), ServiceTypeCode: 6052, DatabaseName: db, MaxConnectionSize: 8,
				Url: "jdbc:postgresql://pg1/" + db + "?user=u&password=p",
			})
		}
		return s
	}
	pts, _ := NewConverter(nil, nil).Stat(javaSender, batchMessage(sample(1700000010000), sample(1700000020000)))
	var want string
	for _, ts := range []string{"1700000010000000000", "1700000020000000000"} {
		for i, db := range []string{"a", "b", "c", "d", "e", "f"} {
			want += "pinpoint_datasource,agent_id=order-api-01,agent_name=order-api-01,database_name=" + db +
				",pool_id=" + strconv.Itoa(i+1) + ",service=order-api,service_type=DBCP2,url=jdbc:postgresql://pg1/" + db +
				" ActiveConnectionSize=0i,MaxConnectionSize=8i " + ts + "\n"
		}
	}
	assertLines(t, pts, want)
}
