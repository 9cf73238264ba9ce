package load

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// limits is when producers stop: at the deadline, or once maxSpans spans were produced
// (a transaction in progress is finished, so the count may pass maxSpans by a callee span
// per producer).
type limits struct {
	deadline time.Time
	maxSpans int64
	produced atomic.Int64
}

func (l *limits) done(now time.Time) bool {
	if !l.deadline.IsZero() && !now.Before(l.deadline) {
		return true
	}
	return l.maxSpans > 0 && l.produced.Load() >= l.maxSpans
}

// pacer spaces an agent's spans to its share of the rate; a zero pacer never waits.
type pacer struct {
	interval time.Duration // per span
	next     time.Time
}

// newPacer paces one of n agents; agent i starts i/n of an interval late, so n agents do
// not all send their first span at the same instant.
func newPacer(rate float64, i, n int) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	interval := time.Duration(float64(time.Second) * float64(n) / rate)
	return &pacer{interval: interval, next: time.Now().Add(interval * time.Duration(i) / time.Duration(n))}
}

// wait blocks until spans more spans may go, or ctx ends. A producer that fell behind
// catches up by at most a second of spans, so a stall is not followed by a burst.
func (p *pacer) wait(ctx context.Context, spans int) error {
	if p.interval == 0 {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.Before(now.Add(-time.Second)) {
		p.next = now
	}
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	p.next = p.next.Add(time.Duration(spans) * p.interval)
	return ctx.Err()
}

// produce generates the agent's transactions into its outbox, and the callee spans of
// linked ones into its callee's outbox, until lim says stop or ctx ends.
func (a *agent) produce(ctx context.Context, g *gen.Generator, p *pacer, lim *limits) {
	var callee *gen.Agent
	if a.callee != nil {
		callee = &a.callee.id
	}
	for !lim.done(time.Now()) {
		tx := g.Next(time.Now().UnixMilli(), callee)
		spans := 1
		if len(tx.Callee) > 0 {
			spans++
		}
		if p.wait(ctx, spans) != nil || lim.done(time.Now()) {
			return
		}
		lim.produced.Add(int64(spans))
		if !put(ctx, a.outbox, tx.Own) || (a.callee != nil && !put(ctx, a.callee.outbox, tx.Callee)) {
			return
		}
		a.rec.transaction()
	}
}

func put(ctx context.Context, out chan<- *pb.PSpanMessage, ms []*pb.PSpanMessage) bool {
	for _, m := range ms {
		select {
		case out <- m:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// sendStream sends the outbox over one SendSpan stream, as the Java agent before 3.1 does.
// A failed stream is counted and reopened; Send reports only that the stream ended, so
// the status comes from CloseAndRecv.
func (a *agent) sendStream(ctx context.Context) {
	client := pb.NewSpanClient(a.spanCC)
	sctx := a.ctx(ctx)
	var stream grpc.ClientStreamingClient[pb.PSpanMessage, emptypb.Empty]
	for m := range a.outbox {
		if stream == nil {
			s, err := client.SendSpan(sctx)
			if err != nil {
				a.rec.fail(err, 1)
				continue
			}
			stream = s
		}
		if err := stream.Send(m); err != nil {
			if _, err = stream.CloseAndRecv(); err == nil {
				err = io.EOF // the collector ended the stream early but cleanly
			}
			a.rec.fail(err, 1)
			stream = nil
			continue
		}
		a.rec.spans([]*pb.PSpanMessage{m}, false)
	}
	if stream != nil {
		if _, err := stream.CloseAndRecv(); err != nil {
			a.rec.fail(err, 0)
		}
	}
}

// sendBatches sends the outbox in SendSpanBatch calls of up to size messages, with at
// most inflight calls at once; a partial batch goes out after flush, as Java's 1 s flush.
func (a *agent) sendBatches(ctx context.Context, cfg *Config) {
	client := pb.NewSpanClient(a.spanCC)
	slots := make(chan struct{}, cfg.Inflight)
	var calls sync.WaitGroup
	batch := make([]*pb.PSpanMessage, 0, cfg.BatchSize)
	send := func() {
		if len(batch) == 0 {
			return
		}
		slots <- struct{}{}
		b := batch
		batch = make([]*pb.PSpanMessage, 0, cfg.BatchSize)
		calls.Go(func() {
			defer func() { <-slots }()
			a.sendBatch(ctx, client, cfg.Deadline, b)
		})
	}
	flush := time.NewTimer(cfg.Flush)
	defer flush.Stop()
	for {
		select {
		case m, ok := <-a.outbox:
			if !ok {
				send()
				calls.Wait()
				return
			}
			batch = append(batch, m)
			if len(batch) == 1 {
				flush.Reset(cfg.Flush)
			}
			if len(batch) == cfg.BatchSize {
				send()
			}
		case <-flush.C:
			send()
		}
	}
}

func (a *agent) sendBatch(ctx context.Context, client pb.SpanClient, deadline time.Duration, b []*pb.PSpanMessage) {
	cctx, cancel := context.WithTimeout(a.ctx(ctx), deadline)
	defer cancel()
	res, err := client.SendSpanBatch(cctx, &pb.PSpanMessageBatch{Span: b})
	if err != nil {
		a.rec.fail(err, len(b))
		return
	}
	a.rec.spans(b, true)
	if n := res.GetPartialSuccess().GetRejectedSpans(); n > 0 {
		a.rec.reject(n)
	}
}
