package pinpoint

import (
	"context"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/stats"
	"github.com/apmkit/apmkit/point"
)

// feedFunc hands points to the pipeline (inputs.Host.Feed).
type feedFunc func(ctx context.Context, cat point.Category, pts []*point.Point) error

// statSink turns agent stats and agent info into metric points and feeds them.
type statSink struct {
	conv     *stats.Converter
	feed     feedFunc
	counters *counters
}

func (s *statSink) ConsumeStat(ctx context.Context, sender *meta.Sender, msg *pb.PStatMessage) error {
	pts, skipped := s.conv.Stat(sender, msg)
	skipped.Each(func(r stats.Reason, n int) {
		s.counters.rejectN(sender, "stat_"+r.String(), n)
	})
	if len(pts) == 0 {
		return nil
	}
	return s.feed(ctx, point.Metric, pts)
}

func (s *statSink) ConsumeAgentInfo(ctx context.Context, sender *meta.Sender, info *pb.PAgentInfo) error {
	return s.feed(ctx, point.Metric, []*point.Point{s.conv.AgentInfo(sender, info)})
}
