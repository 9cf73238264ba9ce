package stats

import (
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// The sizes of a 30-s report: 6 samples per PAgentStatBatch (Java 6 x 10 s, Go 6 x 5 s).
func javaBatch() *pb.PStatMessage {
	samples := make([]*pb.PAgentStat, 6)
	for i := range samples {
		samples[i] = javaSample()
		samples[i].Timestamp += int64(i) * 10000
	}
	return batchMessage(samples...)
}

func goBatch() *pb.PStatMessage {
	samples := make([]*pb.PAgentStat, 6)
	for i := range samples {
		samples[i] = goSamples()[i%2]
		samples[i].Timestamp += int64(i) * 5000
	}
	return batchMessage(samples...)
}

// BenchmarkStat reports ns and allocations per converted message, with the agent info
// already in the store's LRU (the steady state of a running collector).
func BenchmarkStat(b *testing.B) {
	for _, bc := range []struct {
		name   string
		sender *meta.Sender
		info   *pb.PAgentInfo
		msg    *pb.PStatMessage
	}{
		{"java_batch_6x(jvm+2_datasources)", javaSender, javaAgentInfo(), javaBatch()},
		{"go_batch_6", goSender, goAgentInfo(), goBatch()},
		{"go_uri_stat_3", goSender, goAgentInfo(), uriMessage(goURIEntry(), goURIEntry(), goURIEntry())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := converterKnowing(b, map[*meta.Sender]*pb.PAgentInfo{bc.sender: bc.info})
			b.ReportAllocs()
			for b.Loop() {
				pts, skipped := c.Stat(bc.sender, bc.msg)
				if len(pts) == 0 || skipped.Total() != 0 {
					b.Fatalf("%d points, skipped %s", len(pts), skipped)
				}
			}
		})
	}
}
