package stats

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// FuzzStat feeds arbitrary bytes that decode as a PStatMessage to the converter: it must
// never panic, every point it returns must be writable line protocol, and it must never
// return more points than the message has samples, data sources and URI entries.
func FuzzStat(f *testing.F) {
	for _, raw := range recordedStatMessages(f) {
		f.Add(raw)
	}
	for _, msg := range []*pb.PStatMessage{
		batchMessage(javaSample()),
		batchMessage(goSamples()...),
		uriMessage(goURIEntry()),
	} {
		raw, err := proto.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	c := converterKnowing(f, map[*meta.Sender]*pb.PAgentInfo{goSender: goAgentInfo()})

	f.Fuzz(func(t *testing.T, raw []byte) {
		msg := &pb.PStatMessage{}
		if proto.Unmarshal(raw, msg) != nil {
			return // the server counts undecodable messages; they never reach the converter
		}
		pts, skipped := c.Stat(goSender, msg)
		for _, p := range pts {
			if err := p.Validate(); err != nil {
				t.Fatalf("invalid point: %v\nmessage: %v", err, msg)
			}
			if _, err := point.AppendLine(nil, p); err != nil {
				t.Fatalf("unencodable point: %v", err)
			}
		}
		if limit := convertibleEntries(msg); len(pts) > limit {
			t.Fatalf("%d points from a message with %d entries", len(pts), limit)
		}
		if skipped.Total() < 0 {
			t.Fatalf("negative skip count %s", skipped)
		}
	})
}

// convertibleEntries is the most points a message can give: one per sample, data source
// and URI entry.
func convertibleEntries(msg *pb.PStatMessage) int {
	n := len(msg.GetAgentUriStat().GetEachUriStat())
	samples := msg.GetAgentStatBatch().GetAgentStat()
	if s := msg.GetAgentStat(); s != nil {
		samples = append(samples, s)
	}
	for _, s := range samples {
		n += 1 + len(s.GetDataSourceList().GetDataSource())
	}
	return n
}

// recordedStatMessages returns the raw PStatMessages of every recording.
func recordedStatMessages(tb testing.TB) [][]byte {
	tb.Helper()
	recs, err := replay.All()
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, rec := range recs {
		for _, ev := range rec.Events {
			if ev.Event != "msg" || ev.Method != "/v1.Stat/SendAgentStat" {
				continue
			}
			raw, err := ev.Bytes()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, raw)
		}
	}
	if len(out) == 0 {
		tb.Fatal("no stat messages in the recordings")
	}
	return out
}
