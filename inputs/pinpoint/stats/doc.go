// Package stats converts what Pinpoint agents report about themselves (PStatMessage on
// /v1.Stat/SendAgentStat and PAgentInfo on /v1.Agent/RequestAgentInfo) into metric points,
// as docs/SCHEMA.md defines them.
//
// # Measurements
//
// pinpoint_jvm: one point per PAgentStat (every entry of a PAgentStatBatch, or a single
// PAgentStat), timestamped with the sample's timestamp.
//   - tags: agent_id, agent_name, service (applicationName), agentVersion, container, hostname,
//     host (= hostname), ip, pid, ports, jvm_gc_type (PJvmGcType without its JVM_GC_TYPE_
//     prefix: SERIAL, PARALLEL, CMS, G1, ZGC, UNKNOWN; a newer code gives UNKNOWN_<code>).
//   - int fields (counts, bytes, ms): CollectInterval (ms, the sample's collect interval;
//     absent when 0), JvmMemoryHeapUsed, JvmMemoryHeapMax, JvmMemoryNonHeapUsed,
//     JvmMemoryNonHeapMax, JvmGcOldCount, JvmGcOldTime, GcNewCount, GcNewTime,
//     TransactionSampledNew, TransactionSampledContinuation, TransactionUnsampledNew,
//     TransactionUnsampledContinuation, TransactionSkippedNew, TransactionSkippedContinuation,
//     ActiveTraceFast, ActiveTraceNormal, ActiveTraceSlow, ActiveTraceVerySlow,
//     ResponseTimeAvg, ResponseTimeMax, OpenFileDescriptorCount, DirectCount,
//     DirectMemoryUsed, MappedCount, MappedMemoryUsed, TotalThreadCount, LoadedClassCount,
//     UnloadedClassCount, DeadlockCount.
//   - float fields (ratios, loads): JvmCpuLoad, SystemCpuLoad, PoolCodeCacheUsed,
//     PoolNewGenUsed, PoolOldGenUsed, PoolSurvivorSpaceUsed, PoolPermGenUsed, PoolMetaspaceUsed.
//
// pinpoint_datasource: one point per PDataSource of each sample, timestamped like the sample.
// Tags agent_id, agent_name, service, host, pool_id, database_name, service_type (the name of
// serviceTypeCode, e.g. HIKARICP, DBCP2), url (credentials removed, see below); int fields
// ActiveConnectionSize, MaxConnectionSize.
//
// pinpoint_uri: one point per PEachUriStat, timestamped with its timestamp (the start of
// the agent's 30-s window, so it may precede the requests it counts). Tags agent_id,
// agent_name, service, host, uri; int fields total_count and failed_count (sums of the
// buckets), total_elapsed_ms, max_ms, failed_elapsed_ms, failed_max_ms, and the buckets of
// the total histogram bucket_lt_100ms, bucket_100_300ms, bucket_300_500ms, bucket_500_1000ms,
// bucket_1000_3000ms, bucket_3000_5000ms, bucket_5000_8000ms, bucket_ge_8000ms, and the same
// with a failed_ prefix (failed_bucket_lt_100ms ... failed_bucket_ge_8000ms) for the failed
// histogram. An empty or absent failed histogram means nothing failed: its fields are 0.
//
// pinpoint_agent: one point per PAgentInfo, timestamped with the agent run's start time (an
// end: its end time), so the info re-sent on every reconnect lands on one row.
// Tags agent_id, agent_name, service, hostname, host, ip, agentVersion, vm_version, container,
// service_type (the name of PAgentInfo.serviceType, else of the `servicetype` header);
// fields start_time (int, epoch ms, from the `starttime` header), pid (int), ports (string),
// server_info (string), jvm_gc_type (string), and for an agent end (endTimestamp > 0)
// end_timestamp (int, epoch ms) and end_status (int).
//
// # Tags after a restart
//
// agent_id, agent_name and service come from the call headers. Everything else that
// describes the agent (hostname, ip, pid, ports, agentVersion, container) comes from the
// PAgentInfo persisted in meta.Store, because agents send PAgentInfo once per process and
// never again after a collector restart. Stats of an agent whose info apmkit never saw get
// the header tags only.
//
// # Absent, not zero
//
// A sub-message the agent did not send (no deadlock, no fileDescriptor, ...) writes no
// field. Inside a sent sub-message proto3 cannot tell 0 from "not set", and 0 is what agents
// mean there (0 deadlocks, 0 transactions), so 0 is written. Negative values are Pinpoint's
// "not available": the Java agent sends -1 for uncollected CPU loads, missing memory pools
// (PermGen on Java 8+, Metaspace before), file descriptors where the OS has none, direct
// buffers and GC counts of an unknown collector, and JMX reports an unbounded memory max
// (non-heap max on Java 8+) as -1. Such values, and NaN or infinite loads, are left out;
// this is normal agent behaviour and is not counted as skipped.
//
// # Skipped content
//
// Content that cannot be converted is left out and counted by Reason in the returned
// Skipped, and the rest of the message is still converted: a PStatMessage without known
// content (UnknownMessage), an active-trace histogram without exactly 4 non-negative counts
// (ActiveTraceHistogram: the four ActiveTrace* fields are left out, the sample is kept), a
// URI entry without a total histogram or with a histogram of other than 0 or 8 buckets or
// negative numbers (URIHistogram), timestamps <= 0 or beyond 2262 (BadTimestamp), and so on.
//
// PProfilerMetric (Java 3.x network metrics, a name with long fields and string tags) is
// skipped and counted as ProfilerMetric: docs/SCHEMA.md defines no measurement for it, and
// naming measurements after agent-supplied names would let agents create unbounded
// measurements. Supporting it is a schema change.
//
// # Data source URLs
//
// The url tag is the JDBC URL without credentials: userinfo (jdbc:mysql://user:pass@host),
// Oracle's user/password@ (jdbc:oracle:thin:scott/tiger@host:1521:orcl becomes
// jdbc:oracle:thin:@host:1521:orcl), and every parameter whose key names a user or a secret
// (user, username, User ID, uid, login, password, pwd, passwd, and any key containing
// password, secret, token, credential, ...) in ?a=b&c=d, ;a=b;c=d and (a=b) forms.
//
// # Go agent quirks (pinpoint-go-agent 1.5)
//
// The Go agent fills the JVM-shaped messages with Go runtime figures; dashboards built for
// Java read them differently:
//   - JvmMemoryHeapUsed/Max are runtime.MemStats HeapInuse/HeapSys, and JvmMemoryNonHeapUsed/
//     Max are StackInuse/StackSys: Go heap and goroutine stacks, not JVM pools. No
//     jvmGcDetailed is sent, so GcNew* and Pool* are absent.
//   - JvmGcOldCount and JvmGcOldTime are per-interval deltas (GCs and pause ms since the
//     previous sample), where Java sends cumulative counters. Summing them over time gives
//     Java's meaning.
//   - jvm_gc_type is always CMS, whatever Go does.
//   - The active-trace histogram is schema 2 (NORMAL): buckets <1 s, <3 s, <5 s and >=5 s.
//   - JvmCpuLoad is process CPU time per wall time (1 = one full core), so it exceeds 1 on a
//     busy multi-core host; Java's is normalised to 0..1 over all cores.
//   - CollectInterval is the elapsed time truncated to whole seconds (4000 for a 4.9-s
//     interval), samples come every 5 s and are sent 6 per batch every 30 s.
//   - No dataSourceList, deadlock, directBuffer or loadedClass is sent, so those fields and
//     pinpoint_datasource points are absent. fileDescriptor and totalThread are sent (0 when
//     the process could not be inspected).
package stats
