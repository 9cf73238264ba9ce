package trace

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// fakeClock is a clock tests move by hand; nothing waits on real time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.UnixMilli(1795417120000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// sink collects what the assembler emits, one span per Emit call; batches holds each
// span's events as points.
type sink struct {
	mu      sync.Mutex
	spans   []*span.Span
	batches [][]*point.Point
	notify  chan struct{}
	fail    error
}

func newSink() *sink { return &sink{notify: make(chan struct{}, 1024)} }

func (s *sink) emit(_ context.Context, sp *span.Span) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.spans = append(s.spans, sp)
	s.batches = append(s.batches, sp.Points())
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (s *sink) points() []*point.Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*point.Point
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

func (s *sink) numBatches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

// harness is an assembler over an in-memory cache and a real meta.Store, with a fake clock.
type harness struct {
	t     testing.TB
	clock *fakeClock
	db    *cache.Memory
	meta  *meta.Store
	asm   *Assembler
	sink  *sink
}

func newHarness(t testing.TB, tune ...func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), sink: newSink()}
	h.db = cache.NewMemory(cache.Config{}, cache.WithClock(h.clock.Now))
	var err error
	h.meta, err = meta.NewStore(h.db.Namespace("meta"), meta.Options{
		Now: h.clock.Now,
		OnPut: func(k meta.AgentKey) {
			if h.asm != nil {
				h.asm.MetadataArrived(k)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Store: h.db.Namespace("trace"), Meta: h.meta, Hostname: "apmkit-host",
		Emit: h.sink.emit, Now: h.clock.Now,
	}
	for _, f := range tune {
		f(&opts)
	}
	h.asm, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.asm.Stop(context.Background())
		_ = h.db.Close()
	})
	return h
}

func (h *harness) span(s *meta.Sender, span *pb.PSpan) {
	h.t.Helper()
	if err := h.asm.ConsumeSpan(context.Background(), s, span); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) chunk(s *meta.Sender, c *pb.PSpanChunk) {
	h.t.Helper()
	if err := h.asm.ConsumeChunk(context.Background(), s, c); err != nil {
		h.t.Fatal(err)
	}
}

// due runs the background work once, as the ticker would.
func (h *harness) due() {
	h.t.Helper()
	if err := h.asm.processDue(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func pointLine(p *point.Point) (string, error) {
	b, err := point.AppendLine(nil, p)
	return string(b), err
}
