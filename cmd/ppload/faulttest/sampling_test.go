package faulttest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/pipeline"
)

// sampledTx is one generated transaction as the sampling test expects it at the sink.
type sampledTx struct {
	trace   string
	web     int // the pair: the agent that started it
	seq     int64
	entries []EntryID // its Pinpoint spans (the caller's, the callee's when linked)
	lines   int64     // span rows: entries plus events (chunks' included)
	failed  bool      // a span or event of it failed
}

// samplingPlan is the traffic of TestSamplingWholeTraces: per pair, consecutive
// transactions of a ppload-web agent, half of them calling its ppload-api agent. Errors:
// ppload's failing roots (5%), and a failing callee span under an ok caller in a tenth of the
// linked transactions. Each batch goes callee first, as agents send them (the callee's span
// ends first).
type samplingPlan struct {
	agents []gen.Agent // web, api, web, api...
	msgs   [][2][][]*pb.PSpanMessage
	txs    []sampledTx
}

const (
	samplingPairs   = 4
	samplingPerPair = 1000
	samplingBatch   = 10
)

func newSamplingPlan(t *testing.T) *samplingPlan {
	t.Helper()
	opts := gen.Options{Events: 8, AsyncFrac: 0.1, ErrorFrac: 0.05, LinkedFrac: 0.5}
	start := time.Now().UnixMilli()
	p := &samplingPlan{}
	for i := range 2 * samplingPairs {
		role := gen.Web
		if i%2 == 1 {
			role = gen.API
		}
		p.agents = append(p.agents, gen.Agent{ID: fmt.Sprintf("smp-%d", i), Name: fmt.Sprintf("%s-%d", role.App(), i), Role: role, StartTime: start})
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for pair := range samplingPairs {
		web, api := p.agents[2*pair], p.agents[2*pair+1]
		g, err := gen.New(opts, web, uint64(pair)+1)
		if err != nil {
			t.Fatal(err)
		}
		var batches [2][][]*pb.PSpanMessage
		var webBuf, apiBuf []*pb.PSpanMessage
		for i := range samplingPerPair {
			tx := g.Next(start+int64(i), &api)
			if len(tx.Callee) > 0 && rng.IntN(10) == 0 {
				tx.Callee[len(tx.Callee)-1].GetSpan().Err = 1
			}
			st := sampledTx{web: pair, seq: tx.ID.GetSequence(),
				trace: fmt.Sprintf("%s^%d^%d", tx.ID.GetAgentId(), tx.ID.GetAgentStartTime(), tx.ID.GetSequence())}
			var tally gen.Tally
			for _, part := range []struct {
				agent gen.Agent
				msgs  []*pb.PSpanMessage
			}{{web, tx.Own}, {api, tx.Callee}} {
				tally.AddAll(part.msgs)
				for _, m := range part.msgs {
					evs := m.GetSpanChunk().GetSpanEvent()
					if s := m.GetSpan(); s != nil {
						st.entries = append(st.entries, entryIDOf(part.agent, s))
						st.failed = st.failed || s.GetErr() > 0
						evs = s.GetSpanEvent()
					}
					for _, ev := range evs {
						st.failed = st.failed || ev.GetExceptionInfo() != nil
					}
				}
			}
			st.lines = tally.Spans + tally.Events
			p.txs = append(p.txs, st)
			webBuf, apiBuf = append(webBuf, tx.Own...), append(apiBuf, tx.Callee...)
			if (i+1)%samplingBatch == 0 || i == samplingPerPair-1 {
				batches[0] = append(batches[0], webBuf)
				batches[1] = append(batches[1], apiBuf)
				webBuf, apiBuf = nil, nil
			}
		}
		p.msgs = append(p.msgs, batches)
	}
	return p
}

// send registers the agents and sends every pair's batches, the callee's before the
// caller's, pairs in parallel; every call must be answered with success.
func (p *samplingPlan) send(t *testing.T, addr string) {
	t.Helper()
	ledger := NewLedger()
	var agents []*Agent
	for _, id := range p.agents {
		a, err := DialAgent(addr, id, ledger, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if err := a.Handshake(context.Background()); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	var wg sync.WaitGroup
	for pair := range samplingPairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			web, api := agents[2*pair], agents[2*pair+1]
			for b := range p.msgs[pair][0] {
				_ = api.SendBatch(context.Background(), p.msgs[pair][1][b]) // in the ledger
				_ = web.SendBatch(context.Background(), p.msgs[pair][0][b])
			}
		}()
	}
	wg.Wait()
	checkNoCallFailed(t, "sampling load", ledger.Snapshot())
}

// TestSamplingWholeTraces runs the apmkit binary in each trace decision mode, sends it
// ppload traffic (linked web -> api transactions, errors in callers and in callees, the
// callee's span first) and checks, span id by span id and row by row at the DataWay sink:
// no trace is partial; with a rate, each agent keeps its share of consecutive transactions
// within binomial bounds and exactly the traces the fixed hash names plus every trace with
// an error anywhere; with rate 0, exactly the traces with an error.
func TestSamplingWholeTraces(t *testing.T) {
	short(t)
	plan := newSamplingPlan(t)
	failed := 0
	for _, tx := range plan.txs {
		if tx.failed {
			failed++
		}
	}
	if failed < 50 {
		t.Fatalf("the plan has %d failing transactions", failed)
	}
	for _, mode := range []struct {
		name, input string
		rate        float64 // < 0: no exact set (smart sampler)
	}{
		{"rate 0.1", "[inputs.pinpoint.sampler]\n  sampling_rate = 0.1\n", 0.1},
		{"rate 0", "[inputs.pinpoint.sampler]\n  sampling_rate = 0.0\n", 0},
		{"rate 0.5 and a close_resource rule on callees only", "[inputs.pinpoint.sampler]\n  sampling_rate = 0.5\n[inputs.pinpoint.close_resource]\n  \"ppload-api\" = [\"^/stock/\"]\n", 0.5},
		{"smart sampler", "[inputs.pinpoint.smart_sampler]\n  enabled = true\n", -1},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := startSink(t)
			c := defaultIOConf()
			c.Input = "  decision_wait = \"1s\"\n" + mode.input
			ap := startApmkit(t, s.url, c)
			plan.send(t, ap.grpcAddr)
			waitFor(t, 90*time.Second, "every trace decided and delivered", func() (bool, string) {
				m := ap.metrics()
				pending := m.sum("apmkit_pipeline_pending_traces")
				queued := m.sum("apmkit_io_queue_points") + m.sum("apmkit_io_output_queue_batches") + m.sum("apmkit_io_spill_batches")
				in, sent := m.sum("apmkit_io_points_in_total", "category=tracing"), m.sum("apmkit_io_points_sent_total", "category=tracing")
				return pending == 0 && queued == 0 && in == sent, fmt.Sprintf("pending traces %v, queued %v, tracing points in %v, sent %v", pending, queued, in, sent)
			})
			m := ap.metrics()
			if code := ap.terminate(); code != 0 {
				t.Errorf("apmkit exited %d", code)
			}
			decided := m.sum("apmkit_pipeline_traces_total")
			if decided != float64(len(plan.txs)) || m.sum("apmkit_pipeline_decisions_total", "when=waited") != decided {
				t.Errorf("%v traces decided, %v after their wait; want each of %d once", decided, m.sum("apmkit_pipeline_decisions_total", "when=waited"), len(plan.txs))
			}
			checkSampled(t, plan, s.view(), mode.rate)
		})
	}
}

// checkSampled checks the sink against the plan: every transaction whole or absent, and
// with rate >= 0 exactly those the rate names.
func checkSampled(t *testing.T, plan *samplingPlan, v sinkView, rate float64) {
	t.Helper()
	if v.dups > 0 || v.badLines > 0 {
		t.Errorf("sink: %d duplicate entry spans, %d bad lines", v.dups, v.badLines)
	}
	byTrace := map[string]int{}
	for id := range v.entries {
		byTrace[id.Trace]++
	}
	var wantLines int64
	kept := make([][]bool, samplingPairs)
	keptOK, keptFailed, failed := 0, 0, 0
	for _, tx := range plan.txs {
		arrived := 0
		for _, id := range tx.entries {
			arrived += v.entries[id]
		}
		whole := arrived == len(tx.entries) && byTrace[tx.trace] == len(tx.entries)
		if arrived > 0 && !whole {
			t.Errorf("trace %s kept partially: %d of its %d Pinpoint spans", tx.trace, arrived, len(tx.entries))
		}
		got := arrived > 0
		kept[tx.web] = append(kept[tx.web], got)
		if tx.failed {
			failed++
		}
		if got {
			wantLines += tx.lines
			if tx.failed {
				keptFailed++
			} else {
				keptOK++
			}
		}
		if rate >= 0 {
			if want := tx.failed || pipeline.KeptByRate(tx.trace, rate); want != got {
				t.Errorf("trace %s (error %v): kept %v, want %v", tx.trace, tx.failed, got, want)
			}
		}
	}
	if v.lines["tracing"] != wantLines {
		t.Errorf("%d span rows at the sink, want %d: the rows of the %d kept traces", v.lines["tracing"], wantLines, keptOK+keptFailed)
	}
	t.Logf("kept %d ok and %d of %d failing traces of %d", keptOK, keptFailed, failed, len(plan.txs))
	if rate < 0 {
		// The smart sampler: one URL template per application, 1 or 2 minutes, the quotas of
		// the test machine's CPU band.
		if keptOK < 5 || keptOK > 2*20 || keptFailed < min(10, failed) || keptFailed > 2*100 {
			t.Errorf("smart sampler kept %d ok traces (want 5..40) and %d of %d failing ones (want %d..200)", keptOK, keptFailed, failed, min(10, failed))
		}
		return
	}
	// Each agent's share over its consecutive transactions (failing ones are kept anyway,
	// so the binomial is over the others).
	const window = 500
	for pair := range samplingPairs {
		for from := 0; from < samplingPerPair; from += window {
			n, k := 0, 0
			for i := from; i < from+window; i++ {
				if plan.txs[pair*samplingPerPair+i].failed {
					continue
				}
				n++
				if kept[pair][i] {
					k++
				}
			}
			mean, sd := float64(n)*rate, math.Sqrt(float64(n)*rate*(1-rate))
			if float64(k) < mean-5*sd || float64(k) > mean+5*sd {
				t.Errorf("agent %s, transactions %d..%d: kept %d of %d ok traces, want %.0f +- %.0f", plan.agents[2*pair].ID, from+1, from+window, k, n, mean, 5*sd)
			}
		}
	}
}
