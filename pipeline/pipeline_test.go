package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// TestNoSamplerNothingWaits: with nothing that can drop a trace, a span is emitted inside
// ProcessSpan, and Emit's error is the caller's.
func TestNoSamplerNothingWaits(t *testing.T) {
	for name, cfg := range map[string]Config{
		"zero":                      {},
		"rate 1, rare, del_message": {SamplingRate: rate(1), KeepRareResource: true, DelMessage: true, Tags: map[string]string{"env": "x"}},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, cfg)
			if h.p.buf != nil {
				t.Fatal("a decision buffer without a sampler or filter")
			}
			h.feed(root(traceID(1), "frontend", "/ok", "ok", 5))
			if got := h.rec.of(traceID(1)); got != 3 {
				t.Fatalf("%d points emitted inside ProcessSpan, want 3", got)
			}
			h.rec.err = errors.New("queue full")
			if err := h.p.ProcessSpan(context.Background(), root(traceID(2), "frontend", "/ok", "ok", 5)); err == nil {
				t.Fatal("Emit's error not returned")
			}
			if st := h.p.Stats(); st.Kept != 6 || st.PendingTraces != 0 || st.TracesKept != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestHashIsFixed pins the trace hash (FNV-1a 64, then splitmix64's finalizer): every
// replica, every restart and every version must decide alike.
func TestHashIsFixed(t *testing.T) {
	for id, want := range map[string]uint64{
		"frontend-01^1795417119878^1": 0xee0dceb2ad9fd326,
		"frontend-01^1795417119878^2": 0x31b56d5fa58627d5,
		"backend-01^1795417119878^1":  0x194e7a3a40f12fd5,
		"":                            0xf52a15e9a9b5e89b,
	} {
		if got := traceHash(id); got != want {
			t.Errorf("traceHash(%q) = %#x, want %#x", id, got, want)
		}
	}
	if !newSampleRate(1).keep(math.MaxUint64) || newSampleRate(0).keep(0) {
		t.Fatal("rate 1 must keep every hash and rate 0 none")
	}
}

// binomialBounds is mean +- 5 standard deviations of the kept count of n traces at rate r:
// a correct hash leaves them about once in 3.5 million windows.
func binomialBounds(n int, r float64) (lo, hi int) {
	mean, sd := float64(n)*r, math.Sqrt(float64(n)*r*(1-r))
	return int(math.Floor(mean - 5*sd)), int(math.Ceil(mean + 5*sd))
}

// agentTraceID is the trace id of an agent's seq-th transaction.
func agentTraceID(agent, seq int) string {
	b := fmt.Appendf(nil, "web-%02d^%d^", agent, 1795417119878+int64(agent)*7)
	return string(strconv.AppendInt(b, int64(seq), 10))
}

// TestKeptShareInEveryWindowOfEveryAgent: agents number their transactions consecutively;
// the rate must hold for every agent and every window of consecutive transactions. FNV-1a
// alone kept nothing of some agents' first thousands of transactions at 10%.
func TestKeptShareInEveryWindowOfEveryAgent(t *testing.T) {
	const agents, perAgent, window = 8, 10_000, 1_000
	for _, r := range []float64{0.01, 0.1, 0.5, 0.9} {
		sr := newSampleRate(r)
		for ag := range agents {
			total, inWindow := 0, 0
			for seq := 1; seq <= perAgent; seq++ {
				if sr.keep(traceHash(agentTraceID(ag, seq))) {
					total++
					inWindow++
				}
				if seq%window == 0 {
					if lo, hi := binomialBounds(window, r); inWindow < lo || inWindow > hi {
						t.Errorf("rate %v, agent %d, transactions %d..%d: kept %d, want %d..%d", r, ag, seq-window+1, seq, inWindow, lo, hi)
					}
					inWindow = 0
				}
			}
			if lo, hi := binomialBounds(perAgent, r); total < lo || total > hi {
				t.Errorf("rate %v, agent %d: kept %d of %d, want %d..%d", r, ag, total, perAgent, lo, hi)
			}
		}
	}
}

// TestReplicasAgree: two pipelines (two replicas, or one before and after a restart) keep
// the same traces, each agent's share within its binomial bounds.
func TestReplicasAgree(t *testing.T) {
	const agents, perAgent, r = 8, 1000, 0.1
	a := newHarness(t, Config{SamplingRate: rate(r)})
	b := newHarness(t, Config{SamplingRate: rate(r)})
	for ag := range agents {
		for seq := 1; seq <= perAgent; seq++ {
			a.feed(root(agentTraceID(ag, seq), "web", "/orders/42", "ok", 5))
			b.feed(root(agentTraceID(ag, seq), "web", "/orders/42", "ok", 5))
		}
	}
	a.decide()
	b.decide()
	for ag := range agents {
		kept := 0
		for seq := 1; seq <= perAgent; seq++ {
			id := agentTraceID(ag, seq)
			if (a.rec.of(id) > 0) != (b.rec.of(id) > 0) {
				t.Fatalf("replicas disagree on %s", id)
			}
			if a.rec.of(id) > 0 {
				kept++
			}
		}
		if lo, hi := binomialBounds(perAgent, r); kept < lo || kept > hi {
			t.Errorf("agent %d: kept %d of %d, want %d..%d", ag, kept, perAgent, lo, hi)
		}
	}
}

// TestTraceConsistency: every part of a trace (root, callee, chunks) gets the same
// decision, whatever order they come in, and so does a second pipeline (a replica).
func TestTraceConsistency(t *testing.T) {
	a := newHarness(t, Config{SamplingRate: rate(0.5)})
	b := newHarness(t, Config{SamplingRate: rate(0.5)})
	var traces []trace
	for i := range 2000 {
		id := traceID(i)
		tr := trace{id: id, spans: []*span.Span{
			callee(id, "backend", "/api/users", "ok", 5),
			root(id, "frontend", "/ok", "ok", 9),
			chunk(id, "frontend", "ok"),
		}}
		traces = append(traces, tr)
		a.feed(tr.spans...)
		for j := len(tr.spans) - 1; j >= 0; j-- { // the replica sees them in another order
			b.feed(spanOf(id, tr.spans[j].Service, resourceOf(tr.spans[j]), parentOf(tr.spans[j]), false, false, 5, len(tr.spans[j].Events)-boolInt(tr.spans[j].Entry() != nil)))
		}
	}
	a.decide()
	b.decide()
	kept := checkWhole(t, a.rec, traces)
	if kept2 := checkWhole(t, b.rec, traces); kept2 != kept {
		t.Fatalf("replicas kept %d and %d traces", kept, kept2)
	}
	for _, tr := range traces {
		if (a.rec.of(tr.id) > 0) != (b.rec.of(tr.id) > 0) {
			t.Fatalf("replicas disagree on %s", tr.id)
		}
	}
	if kept == 0 || kept == len(traces) {
		t.Fatalf("kept %d of %d: the sampler does not sample", kept, len(traces))
	}
}

func resourceOf(s *span.Span) string {
	if e := s.Entry(); e != nil {
		return s.String(e.Resource)
	}
	return ""
}

func parentOf(s *span.Span) int64 {
	if e := s.Entry(); e != nil {
		return e.ParentID
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestErrorAnywhereKeepsTheWholeTrace: with rate 0 exactly the traces with an error in any
// span are kept, whole: the callee's error span arrives before its caller's span, an error
// in the caller, an error in an event of a chunk.
func TestErrorAnywhereKeepsTheWholeTrace(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0)})
	cases := []struct {
		name  string
		spans func(id string) []*span.Span
		error bool
	}{
		{"callee error first", func(id string) []*span.Span {
			return []*span.Span{callee(id, "backend", "/stock/42", "error", 3), root(id, "frontend", "/orders/42", "ok", 9)}
		}, true},
		{"caller error last", func(id string) []*span.Span {
			return []*span.Span{callee(id, "backend", "/stock/42", "ok", 3), root(id, "frontend", "/orders/42", "error", 9)}
		}, true},
		{"error in a chunk's event", func(id string) []*span.Span {
			return []*span.Span{callee(id, "backend", "/stock/42", "ok", 3), root(id, "frontend", "/orders/42", "ok", 9), chunk(id, "frontend", "error")}
		}, true},
		{"error in a callee's event", func(id string) []*span.Span {
			return []*span.Span{spanOf(id, "backend", "/stock/42", 77, false, true, 3, 4), root(id, "frontend", "/orders/42", "ok", 9)}
		}, true},
		{"no error", func(id string) []*span.Span {
			return []*span.Span{callee(id, "backend", "/stock/42", "ok", 3), root(id, "frontend", "/orders/42", "ok", 9), chunk(id, "frontend", "ok")}
		}, false},
	}
	var traces []trace
	for i, c := range cases {
		for j := range 50 {
			tr := trace{id: traceID(i*1000 + j)}
			tr.spans = c.spans(tr.id)
			traces = append(traces, tr)
			h.feed(tr.spans...)
		}
	}
	if len(h.rec.traces()) != 0 {
		t.Fatal("spans emitted before their trace's decision")
	}
	h.decide()
	checkWhole(t, h.rec, traces)
	for i, c := range cases {
		for j := range 50 {
			if kept := h.rec.of(traceID(i*1000+j)) > 0; kept != c.error {
				t.Fatalf("%s: trace kept=%v, want %v", c.name, kept, c.error)
			}
		}
	}
	st := h.p.Stats()
	if st.TracesKept != 200 || st.TracesDropped != 50 || st.PendingTraces != 0 || st.PendingBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := testutil.ToFloat64(h.p.metrics.traces[1][reasonError].get()); got != 200 {
		t.Fatalf("traces kept for an error: %v", got)
	}
}

// TestLateSpansFollowTheDecision: a span that comes after its trace was decided follows
// the remembered decision at once, also an error span of a dropped trace (the trace stays
// whole); once forgotten, a span waits and is decided again.
func TestLateSpansFollowTheDecision(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0)})
	keptID, droppedID := traceID(1), traceID(2)
	h.feed(root(keptID, "frontend", "/a", "error", 5), root(droppedID, "frontend", "/a", "ok", 5))
	h.decide()
	if h.rec.of(keptID) != 3 || h.rec.of(droppedID) != 0 {
		t.Fatalf("decisions: kept %d dropped %d points", h.rec.of(keptID), h.rec.of(droppedID))
	}
	h.clock.Add(time.Minute) // chunk_wait: partial spans come late
	h.feed(chunk(keptID, "frontend", "ok"))
	if h.rec.of(keptID) != 4 {
		t.Fatal("late chunk of a kept trace not emitted at once")
	}
	h.feed(chunk(droppedID, "frontend", "error"), callee(droppedID, "backend", "/b", "error", 1))
	if h.rec.of(droppedID) != 0 {
		t.Fatal("late spans of a dropped trace emitted: the trace is partial")
	}
	if st := h.p.Stats(); st.LateSpans != 3 || st.PendingTraces != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := testutil.ToFloat64(h.p.metrics.late[0].get()); got != 2 {
		t.Fatalf("late dropped spans %v", got)
	}
	h.clock.Add(memoryTTL)
	h.feed(chunk(droppedID, "frontend", "error"))
	if st := h.p.Stats(); st.PendingTraces != 1 {
		t.Fatalf("a span of a forgotten trace does not wait: %+v", st)
	}
}

// TestCloseResourceDropsWholeTraces: close_resource reads the root's service and
// resource and drops every span of the trace, the callees' too, and errors too; a rule
// that matches only a callee drops nothing. Without the root, the entry that started
// first stands in.
func TestCloseResourceDropsWholeTraces(t *testing.T) {
	h := newHarness(t, Config{CloseResource: map[string][]string{
		"frontend": {"^/static/"},
		"backend":  {"^/internal/"},
		"*":        {"^/health$"},
	}})
	cases := []struct {
		spans []*span.Span
		kept  bool
	}{
		{[]*span.Span{callee("", "backend", "/stock/1", "ok", 1), root("", "frontend", "/static/app.js", "ok", 5)}, false},
		{[]*span.Span{root("", "backend", "/static/app.js", "ok", 5)}, true}, // the rule names frontend only
		{[]*span.Span{root("", "frontend", "/health", "error", 5), callee("", "backend", "/db", "error", 1)}, false},
		{[]*span.Span{root("", "backend", "/health", "ok", 5)}, false}, // "*"
		{[]*span.Span{root("", "backend", "/healthz", "ok", 5)}, true},
		{[]*span.Span{root("", "frontend", "/ok", "ok", 5), callee("", "backend", "/internal/x", "ok", 1)}, true},
		{[]*span.Span{callee("", "backend", "/internal/x", "ok", 1), chunk("", "frontend", "ok")}, false}, // no root: the callee stands in
	}
	var traces []trace
	for i, c := range cases {
		tr := trace{id: traceID(i)}
		for _, s := range c.spans {
			s.TraceID = tr.id
		}
		tr.spans = c.spans
		traces = append(traces, tr)
		h.feed(c.spans...)
	}
	h.decide()
	checkWhole(t, h.rec, traces)
	for i, c := range cases {
		if kept := h.rec.of(traces[i].id) > 0; kept != c.kept {
			t.Errorf("case %d (%s %s): kept=%v, want %v", i, c.spans[0].Service, resourceOf(c.spans[0]), kept, c.kept)
		}
		h.feed(chunk(traces[i].id, "frontend", "ok"))
		if later := h.rec.of(traces[i].id) > 0; later != c.kept {
			t.Errorf("case %d: a later chunk got another decision", i)
		}
	}
	if _, err := New(Config{CloseResource: map[string][]string{"svc": {"(["}}}, Options{}); err == nil || !strings.Contains(err.Error(), `"(["`) {
		t.Fatalf("invalid regexp: %v", err)
	}
}

// TestKeepRareResourceKeepsWholeTraces: the first trace of a (service, URL template)
// within the window is kept whole, whatever the sampler says.
func TestKeepRareResourceKeepsWholeTraces(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0), KeepRareResource: true})
	mk := func(i int, url string) trace {
		id := traceID(i)
		return trace{id: id, spans: []*span.Span{callee(id, "backend", "/stock/7", "ok", 1), root(id, "frontend", url, "ok", 5)}}
	}
	first, second := mk(1, "/orders/1"), mk(2, "/orders/2") // one template: /orders/{id}
	h.feed(first.spans...)
	h.feed(second.spans...)
	h.decide()
	if checkWhole(t, h.rec, []trace{first, second}) != 1 || h.rec.of(first.id) == 0 {
		t.Fatalf("kept %v: want the first trace of /orders/{id} only", h.rec.traces())
	}
	h.clock.Add(30 * time.Minute)
	third := mk(3, "/orders/3")
	h.feed(third.spans...)
	h.decide()
	if h.rec.of(third.id) != 0 {
		t.Fatal("a resource seen 30 minutes ago counted as rare")
	}
	h.clock.Add(RareWindow)
	fourth := mk(4, "/orders/4")
	h.feed(fourth.spans...)
	h.decide()
	if checkWhole(t, h.rec, []trace{fourth}) != 1 {
		t.Fatal("resource not forgotten after the window")
	}
	if got := testutil.ToFloat64(h.p.metrics.rareEntries); got != 2 {
		t.Fatalf("rare resources gauge %v, want 2", got)
	}
}

// TestDecisionBufferIsBounded: with the buffer full, the oldest traces are decided early
// (counted), and still whole; the memory stays within the bound.
func TestDecisionBufferIsBounded(t *testing.T) {
	const bound = 64 << 10
	h := newHarness(t, Config{SamplingRate: rate(0.3), DecisionBufferBytes: bound})
	var traces []trace
	maxSpan := 0
	for i := range 3000 {
		id := traceID(i)
		tr := trace{id: id, spans: []*span.Span{callee(id, "backend", "/stock/1", "ok", 1), root(id, "frontend", "/orders/1", "ok", 5)}}
		traces = append(traces, tr)
		for _, s := range tr.spans {
			maxSpan = max(maxSpan, s.Size())
			h.feed(s)
			if st := h.p.Stats(); st.PendingBytes > bound {
				t.Fatalf("%d bytes wait, bound %d", st.PendingBytes, bound)
			}
		}
	}
	st := h.p.Stats()
	if st.EarlyDecisions == 0 || st.PendingTraces == 0 || st.PendingTraces*int64(2*maxSpan) < bound/2 {
		t.Fatalf("stats %+v: the buffer should be full and deciding early", st)
	}
	h.decide()
	kept := checkWhole(t, h.rec, traces)
	r := newSampleRate(0.3)
	for _, tr := range traces {
		if (h.rec.of(tr.id) > 0) != r.keep(traceHash(tr.id)) {
			t.Fatalf("trace %s: decided early against its hash", tr.id)
		}
	}
	if lo, hi := binomialBounds(len(traces), 0.3); kept < lo || kept > hi {
		t.Fatalf("kept %d of %d", kept, len(traces))
	}
	if got := testutil.ToFloat64(h.p.metrics.decided[causeBufferFull].get()); got != float64(h.p.Stats().EarlyDecisions) {
		t.Fatalf("buffer_full decisions %v, early %d", got, h.p.Stats().EarlyDecisions)
	}
}

// TestStopDecidesWhatWaits: Stop decides and emits every waiting trace; spans that come
// after Stop are decided at once.
func TestStopDecidesWhatWaits(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0)})
	h.feed(callee(traceID(1), "backend", "/b", "error", 1), root(traceID(1), "frontend", "/a", "ok", 5), root(traceID(2), "frontend", "/a", "ok", 5))
	if err := h.p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.rec.of(traceID(1)) != 6 || h.rec.of(traceID(2)) != 0 {
		t.Fatalf("after stop: %v", h.rec.traces())
	}
	if st := h.p.Stats(); st.PendingTraces != 0 || st.EarlyDecisions != 2 {
		t.Fatalf("stats %+v", st)
	}
	h.feed(root(traceID(3), "frontend", "/a", "error", 5), chunk(traceID(1), "frontend", "ok"))
	if h.rec.of(traceID(3)) != 3 || h.rec.of(traceID(1)) != 7 {
		t.Fatalf("after stop, spans are not decided at once: %v", h.rec.traces())
	}
	if err := h.p.Stop(context.Background()); err != nil {
		t.Fatal("second Stop:", err)
	}
	h.p.Start() // after Stop: nothing to start
}

// TestStopReportsEmitErrors: what the uploader refuses at Stop is counted and reported.
func TestStopReportsEmitErrors(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0)})
	h.feed(root(traceID(1), "frontend", "/a", "error", 5))
	h.rec.err = errors.New("io: uploader not running")
	if err := h.p.Stop(context.Background()); err == nil || !strings.Contains(err.Error(), "1 decided spans") {
		t.Fatalf("stop: %v", err)
	}
	if got := testutil.ToFloat64(h.p.metrics.emitErrors); got != 1 {
		t.Fatalf("emit errors %v", got)
	}
}

// TestBackgroundLoopDecidesAfterTheWait: Start's loop decides a trace once its wait is over
// on the pipeline's clock, not before.
func TestBackgroundLoopDecidesAfterTheWait(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0), DecisionWait: 50 * time.Millisecond})
	h.p.Start()
	h.p.Start() // idempotent
	h.feed(callee(traceID(1), "backend", "/b", "error", 1))
	time.Sleep(100 * time.Millisecond) // real time passes, the pipeline's clock does not
	h.feed(root(traceID(1), "frontend", "/a", "ok", 5))
	if h.rec.of(traceID(1)) != 0 {
		t.Fatal("decided before its wait was over")
	}
	h.clock.Add(50 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for h.rec.of(traceID(1)) != 6 {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not decide the trace: %v", h.rec.traces())
		}
		time.Sleep(time.Millisecond)
	}
	if err := h.p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestStopCutsABlockedLoopShort: a loop blocked in Emit ends when Stop's context does.
func TestStopCutsABlockedLoopShort(t *testing.T) {
	clock := newClock()
	entered := make(chan struct{}, 1)
	p, err := New(Config{SamplingRate: rate(1.0 / 3), DecisionWait: time.Millisecond}, Options{Now: clock.Now, Emit: func(ctx context.Context, _ *span.Span) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	for i := range 10 {
		_ = p.ProcessSpan(context.Background(), root(traceID(i), "frontend", "/a", "error", 5))
	}
	clock.Add(time.Second)
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); err == nil {
		t.Fatal("Stop did not report the spans it could not hand on")
	}
}

// TestConcurrentTraces: many goroutines feed the spans of the same traces while the loop
// decides; every trace ends whole.
func TestConcurrentTraces(t *testing.T) {
	rec := newRecorder()
	p, err := New(Config{SamplingRate: rate(0.2), DecisionWait: 20 * time.Millisecond, DecisionBufferBytes: 256 << 10}, Options{Emit: rec.emit})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	const n, workers = 4000, 8
	traces := make([]trace, n)
	for i := range traces {
		id := traceID(i)
		traces[i] = trace{id: id, spans: []*span.Span{
			callee(id, "backend", "/b", "ok", 1), root(id, "frontend", "/a", "ok", 5), chunk(id, "frontend", "ok"),
		}}
		if i%10 == 0 {
			traces[i].spans[0] = callee(id, "backend", "/b", "error", 1)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Span slot i is span i%3 of trace i/3: a trace's spans go through different
			// workers, in any order.
			for i := w; i < n*3; i += workers {
				if err := p.ProcessSpan(context.Background(), traces[i/3].spans[i%3]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	kept := checkWhole(t, rec, traces)
	errorsKept := 0
	for i := 0; i < n; i += 10 {
		if rec.of(traces[i].id) > 0 {
			errorsKept++
		}
	}
	// An error trace is dropped only when its error span came after the decision (the
	// scheduler can hold a worker past the wait, or the full buffer decide early).
	if st := p.Stats(); int64(n/10-errorsKept) > st.LateSpans {
		t.Fatalf("%d of %d error traces dropped, %d late spans", n/10-errorsKept, n/10, st.LateSpans)
	}
	if kept <= errorsKept || kept == n {
		t.Fatalf("kept %d of %d", kept, n)
	}
}

// TestDecisionMetrics counts decisions in traces and points, by reason and when.
func TestDecisionMetrics(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0), CloseResource: map[string][]string{"*": {"^/health$"}}})
	h.feed(root(traceID(1), "a", "/health", "ok", 1), callee(traceID(1), "b", "/x", "ok", 1))
	h.feed(root(traceID(2), "a", "/ok", "error", 1))
	h.feed(root(traceID(3), "a", "/ok", "ok", 1))
	if got := testutil.ToFloat64(h.p.metrics.pendingTraces); got != 3 {
		t.Fatalf("pending traces gauge %v", got)
	}
	if got := testutil.ToFloat64(h.p.metrics.pendingBytes); got < 3*traceOverhead {
		t.Fatalf("pending bytes gauge %v", got)
	}
	h.decide()
	for _, c := range []struct {
		keep   bool
		reason reason
		traces float64
		points float64
	}{
		{false, reasonCloseResource, 1, 6},
		{true, reasonError, 1, 3},
		{false, reasonSampler, 1, 3},
	} {
		if got := testutil.ToFloat64(h.p.metrics.traces[keepIndex(c.keep)][c.reason].get()); got != c.traces {
			t.Errorf("traces %v %s: %v, want %v", c.keep, c.reason, got, c.traces)
		}
		if got := testutil.ToFloat64(h.p.metrics.points[keepIndex(c.keep)][c.reason].get()); got != c.points {
			t.Errorf("points %v %s: %v, want %v", c.keep, c.reason, got, c.points)
		}
	}
	if st := h.p.Stats(); st.Kept != 3 || st.Dropped != 9 || st.TracesKept != 1 || st.TracesDropped != 2 || st.PendingTraces != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := testutil.ToFloat64(h.p.metrics.decided[causeWaited].get()); got != 3 {
		t.Fatalf("decisions after the wait %v", got)
	}
	n, err := testutil.GatherAndCount(h.reg, "apmkit_pipeline_traces_total", "apmkit_pipeline_points_total", "apmkit_pipeline_pending_capacity_bytes")
	if err != nil || n != 7 {
		t.Fatalf("%d series (only the combinations that happened, and the capacity): %v", n, err)
	}
}

// TestDecisionMemory: decisions expire after memoryTTL; a full set forgets its oldest.
func TestDecisionMemory(t *testing.T) {
	clock := newClock()
	m := newDecisionMemory(clock.Now())
	m.set(42, decision{true, reasonError}, clock.Now())
	if d, ok := m.get(42, clock.Now()); !ok || !d.keep || d.reason != reasonError {
		t.Fatalf("get %v %v", d, ok)
	}
	clock.Add(memoryTTL)
	if _, ok := m.get(42, clock.Now()); ok {
		t.Fatal("a decision outlived its TTL")
	}
	// Hashes of one set: the same low bits.
	for i := range memoryWays + 1 {
		clock.Add(time.Second)
		m.set(uint64(i+1)<<32|7, decision{i%2 == 0, reasonSampler}, clock.Now())
	}
	if _, ok := m.get(1<<32|7, clock.Now()); ok {
		t.Fatal("the oldest entry of a full set was kept")
	}
	for i := 1; i <= memoryWays; i++ {
		if d, ok := m.get(uint64(i+1)<<32|7, clock.Now()); !ok || d.keep != (i%2 == 0) {
			t.Fatalf("entry %d: %v %v", i, d, ok)
		}
	}
}

func TestDelMessage(t *testing.T) {
	for _, cfg := range []Config{{DelMessage: true}, {DelMessage: true, SamplingRate: rate(0)}} {
		h := newHarness(t, cfg)
		h.feed(root(traceID(1), "frontend", "/ok", "error", 5), chunk(traceID(2), "frontend", "error"))
		h.decide()
		pts := h.rec.allPoints()
		if len(pts) != 4 {
			t.Fatalf("%d points kept, want 4", len(pts))
		}
		for _, pt := range pts {
			if _, has := pt.Field("message"); has {
				t.Fatalf("message kept on %v", pt.Tags)
			}
		}
	}
	h := newHarness(t, Config{})
	h.feed(root(traceID(1), "frontend", "/ok", "ok", 5))
	for _, pt := range h.rec.allPoints() {
		if _, has := pt.Field("message"); !has {
			t.Fatal("message removed without del_message")
		}
	}
}

func TestTagsReachSpansAndMetricsAndNeverOverrideOwnTags(t *testing.T) {
	h := newHarness(t, Config{
		GlobalTags:   map[string]string{"env": "global", "region": "eu"},
		Tags:         map[string]string{"env": "input", "team": "a", "service": "input-svc"},
		SamplingRate: rate(0),
	})
	metric := point.New("pinpoint_jvm", 1)
	metric.SetTag("service", "frontend")
	metric.AddField(point.Int("TotalThreadCount", 10))
	h.p.Process([]*point.Point{metric})
	h.feed(root(traceID(1), "frontend", "/ok", "error", 5))
	h.decide()
	spans := h.rec.allPoints()
	if len(spans) != 3 {
		t.Fatalf("%d span points, want 3", len(spans))
	}
	want := map[string]string{"env": "input", "region": "eu", "team": "a", "service": "frontend"}
	for _, pt := range append(spans, metric) {
		for k, v := range want {
			if got, _ := pt.Tag(k); got != v {
				t.Errorf("%s: tag %s = %q, want %q", pt.Name, k, got, v)
			}
		}
	}
}

func TestNoTraceIDIsKept(t *testing.T) {
	h := newHarness(t, Config{SamplingRate: rate(0)})
	h.feed(root("", "frontend", "/ok", "ok", 5))
	if h.rec.of("") != 3 {
		t.Fatal("a span without trace id waited or was dropped")
	}
}

func TestInvalidConfig(t *testing.T) {
	for _, cfg := range []Config{
		{SamplingRate: rate(1.5)},
		{DecisionWait: -time.Second},
		{Tags: map[string]string{"": "x"}},
	} {
		if _, err := New(cfg, Options{}); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
