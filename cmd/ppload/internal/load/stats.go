package load

import (
	"context"
	"time"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// statSamples is how many PAgentStat one PAgentStatBatch carries, as both agents send.
const statSamples = 6

// startStats opens SendAgentStat and sends a batch of 6 JVM samples (with two connection
// pools) and the URI statistics at once and then every `every`. Real agents wait a full interval before the first batch; ppload sends one at
// the start so short runs exercise the stat path too.
func (a *agent) startStats(ctx context.Context, every time.Duration) {
	sctx, cancel := context.WithCancel(a.ctx(ctx))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		stream, err := pbStatClient(a).SendAgentStat(sctx)
		if err != nil {
			a.rec.fail(err, 0)
			return
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			now := time.Now()
			for _, m := range []struct {
				msg  *pb.PStatMessage
				kind string
			}{
				{&pb.PStatMessage{Field: &pb.PStatMessage_AgentStatBatch{AgentStatBatch: statBatch(now, every)}}, msgStatBatch},
				{&pb.PStatMessage{Field: &pb.PStatMessage_AgentUriStat{AgentUriStat: uriStat(now)}}, msgURIStat},
			} {
				if err := stream.Send(m.msg); err != nil {
					_, err = stream.CloseAndRecv()
					a.rec.fail(err, 0)
					return
				}
				a.rec.count(msgStatMessage, 1)
				a.rec.count(m.kind, 1)
			}
			select {
			case <-stop:
				if _, err := stream.CloseAndRecv(); err != nil {
					a.rec.fail(err, 0)
				}
				return
			case <-t.C:
			}
		}
	}()
	a.background = append(a.background, func() {
		close(stop)
		endStream(done, cancel)
	})
}

func pbStatClient(a *agent) pb.StatClient { return pb.NewStatClient(a.statCC) }

// statBatch is 6 JVM samples evenly spread over the interval that ends at now.
func statBatch(now time.Time, every time.Duration) *pb.PAgentStatBatch {
	step := every / statSamples
	b := &pb.PAgentStatBatch{}
	for i := range statSamples {
		ts := now.Add(-time.Duration(statSamples-1-i) * step).UnixMilli()
		b.AgentStat = append(b.AgentStat, &pb.PAgentStat{
			Timestamp: ts, CollectInterval: step.Milliseconds(),
			Gc: &pb.PJvmGc{
				Type: pb.PJvmGcType_JVM_GC_TYPE_G1, JvmMemoryHeapUsed: 300 << 20, JvmMemoryHeapMax: 1 << 30,
				JvmMemoryNonHeapUsed: 120 << 20, JvmMemoryNonHeapMax: -1, JvmGcOldCount: 2, JvmGcOldTime: 40,
			},
			CpuLoad:        &pb.PCpuLoad{JvmCpuLoad: 0.21, SystemCpuLoad: 0.35},
			Transaction:    &pb.PTransaction{SampledNewCount: 120, SampledContinuationCount: 40},
			ActiveTrace:    &pb.PActiveTrace{Histogram: &pb.PActiveTraceHistogram{Version: 0, HistogramSchemaType: 2, ActiveTraceCount: []int32{3, 1, 0, 0}}},
			ResponseTime:   &pb.PResponseTime{Avg: 12, Max: 180},
			TotalThread:    &pb.PTotalThread{TotalThreadCount: 64},
			LoadedClass:    &pb.PLoadedClass{LoadedClassCount: 12000, UnloadedClassCount: 10},
			FileDescriptor: &pb.PFileDescriptor{OpenFileDescriptorCount: 180},
			DataSourceList: &pb.PDataSourceList{DataSource: []*pb.PDataSource{
				// A write pool and a read pool of one database, as Java services often have.
				{Id: 1, ServiceTypeCode: hikariCP, DatabaseName: "shop", Url: "jdbc:mysql://db.shop:3306/shop", ActiveConnectionSize: 4, MaxConnectionSize: 20},
				{Id: 2, ServiceTypeCode: hikariCP, DatabaseName: "shop", Url: "jdbc:mysql://db.shop:3306/shop", ActiveConnectionSize: 1, MaxConnectionSize: 10},
			}},
		})
	}
	return b
}

// hikariCP is Pinpoint's serviceType code of the HikariCP connection pool.
const hikariCP = 6060

// uriStat is the URI statistics of the 30 s window before now, as the Java agent sends them
// (Pinpoint's 8 histogram buckets: <100, <300, <500, <1000, <3000, <5000, <8000, >=8000 ms).
func uriStat(now time.Time) *pb.PAgentUriStat {
	window := now.Add(-30*time.Second).UnixMilli() / 30_000 * 30_000
	each := func(uri string, total, failed []int32) *pb.PEachUriStat {
		return &pb.PEachUriStat{Uri: uri, Timestamp: window,
			TotalHistogram:  &pb.PUriHistogram{Total: 4200, Max: 950, Histogram: total},
			FailedHistogram: &pb.PUriHistogram{Total: 300, Max: 300, Histogram: failed}}
	}
	return &pb.PAgentUriStat{BucketVersion: 0, EachUriStat: []*pb.PEachUriStat{
		each("/items/{id}", []int32{40, 6, 1, 1, 0, 0, 0, 0}, []int32{1, 0, 1, 0, 0, 0, 0, 0}),
		each("/checkout", []int32{12, 3, 0, 1, 0, 0, 0, 0}, []int32{0, 0, 0, 0, 0, 0, 0, 0}),
	}}
}
