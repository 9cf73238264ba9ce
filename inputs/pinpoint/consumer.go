package pinpoint

import (
	"context"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/trace"
)

// SpanConsumer receives every decoded span and chunk, attributed to its sender. It may keep
// the messages. An error means the data could not be taken (counted and, for batches,
// reported to the agent as rejected).
type SpanConsumer interface {
	ConsumeSpan(ctx context.Context, s *meta.Sender, span *pb.PSpan) error
	ConsumeChunk(ctx context.Context, s *meta.Sender, chunk *pb.PSpanChunk) error
}

// StatConsumer receives agent stats and agent info.
type StatConsumer interface {
	ConsumeStat(ctx context.Context, s *meta.Sender, msg *pb.PStatMessage) error
	ConsumeAgentInfo(ctx context.Context, s *meta.Sender, info *pb.PAgentInfo) error
}

var _ SpanConsumer = (*trace.Assembler)(nil)

// discard is the consumer of data no stage handles yet: the server has counted it.
type discard struct{}

func (discard) ConsumeSpan(context.Context, *meta.Sender, *pb.PSpan) error           { return nil }
func (discard) ConsumeChunk(context.Context, *meta.Sender, *pb.PSpanChunk) error     { return nil }
func (discard) ConsumeStat(context.Context, *meta.Sender, *pb.PStatMessage) error    { return nil }
func (discard) ConsumeAgentInfo(context.Context, *meta.Sender, *pb.PAgentInfo) error { return nil }
