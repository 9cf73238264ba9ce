package io

import (
	"context"

	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// FeedSpan hands one span to the tracing outputs, as Feed does points: its events are
// encoded as line protocol in the caller's goroutine, straight from the span (one line per
// event, no intermediate points), and committed within the memory budget. The span is not
// kept: once FeedSpan returns, the caller may let it go.
func (u *Uploader) FeedSpan(ctx context.Context, s *span.Span) error {
	return u.feedCategory(ctx, categoryIndex(point.Tracing), len(s.Events), func(sc *feedScratch, done int) int {
		return encodeSpanChunk(sc, s, done)
	})
}

// encodeSpanChunk encodes the span's events from number done on until about
// feedChunkBytes are encoded, and returns how many it encoded.
func encodeSpanChunk(sc *feedScratch, s *span.Span, done int) int {
	sc.lines.ends = sc.lines.ends[:0]
	buf := sc.spans[:0]
	n := 0
	for i := done; i < len(s.Events) && len(buf) < feedChunkBytes; i++ {
		buf = s.AppendLine(buf, i)
		sc.lines.ends = append(sc.lines.ends, len(buf))
		n++
	}
	sc.spans, sc.lines.buf = buf, buf
	return n
}
