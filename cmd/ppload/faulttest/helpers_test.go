package faulttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
)

// testGen is the span shape of the tests' loads: 8 events per span (9 points with the
// entry span), a tenth of the transactions with async work, a third calling the API agent.
var testGen = gen.Options{Events: 8, AsyncFrac: 0.1, ErrorFrac: 0.05, LinkedFrac: 0.3}

// startTestLoad starts pairs of agents sending rate transactions/s to addr in batches of
// 10; their entry spans' trace ids start with "lt-"+runID+"-".
func startTestLoad(t *testing.T, addr, runID string, pairs int, rate float64, pingEvery time.Duration) *Load {
	t.Helper()
	l, err := StartLoad(context.Background(), LoadOptions{
		Addr: addr, Pairs: pairs, RunID: runID, Rate: rate, BatchSize: 10, Gen: testGen,
		Seed: uint64(len(runID)) + 1, PingEvery: pingEvery,
		// Far beyond Java's 6 s: a call apmkit answers late is still an answer, and an
		// answered call is what lets the test name each span's fate.
		Deadline: 60 * time.Second,
	})
	if err != nil {
		t.Fatalf("start load %s: %v", runID, err)
	}
	t.Cleanup(func() { _ = l.Stop() })
	return l
}

// loadPrefix is the trace id prefix of a load's entry spans (callee spans carry their
// caller's trace id, which has the same prefix).
func loadPrefix(runID string) string { return "lt-" + runID + "-" }

// delivery compares what apmkit acknowledged with what reached the sink, for the entry
// spans whose trace id starts with prefix.
type delivery struct {
	acked      int       // distinct spans acknowledged
	arrived    int       // distinct spans of prefix at the sink
	missing    []EntryID // acknowledged, never arrived
	unexpected []EntryID // arrived, neither acknowledged nor of an unanswered call
	dups       []EntryID // arrived more than once
	maybe      int       // of unanswered calls (unknown fate) that arrived
}

func compare(snap Snapshot, view sinkView, prefix string) delivery {
	acked := snap.AckedSet()
	unknown := map[EntryID]bool{}
	for _, id := range snap.Unknown {
		unknown[id] = true
	}
	d := delivery{acked: len(acked)}
	for id := range acked {
		if view.entries[id] == 0 {
			d.missing = append(d.missing, id)
		}
	}
	for id, n := range view.entries {
		if !strings.HasPrefix(id.Trace, prefix) {
			continue
		}
		d.arrived++
		if n > 1 {
			d.dups = append(d.dups, id)
		}
		if acked[id] == 0 {
			if unknown[id] {
				d.maybe++
			} else {
				d.unexpected = append(d.unexpected, id)
			}
		}
	}
	return d
}

func (d delivery) String() string {
	return fmt.Sprintf("acked %d, arrived %d, missing %d %s, duplicated %d %s, unexpected %d %s, of unanswered calls %d",
		d.acked, d.arrived, len(d.missing), few(d.missing), len(d.dups), few(d.dups), len(d.unexpected), few(d.unexpected), d.maybe)
}

func few(ids []EntryID) string {
	if len(ids) == 0 {
		return ""
	}
	s := fmt.Sprint(ids[:min(3, len(ids))])
	if len(ids) > 3 {
		s += "..."
	}
	return s
}

// checkExactlyOnce fails unless every acknowledged span arrived exactly once and nothing
// arrived that was not sent.
func checkExactlyOnce(t *testing.T, d delivery) {
	t.Helper()
	if len(d.missing) > 0 || len(d.dups) > 0 || len(d.unexpected) > 0 || d.acked == 0 {
		t.Errorf("delivery is not exactly once: %v", d)
	}
}

// waitDrained waits until apmkit's uploader is done: nothing queued, in memory or
// spilled, and either every tracing point this process took in counted as sent or
// dropped, or every span of snaps at the sink. A point is counted sent only once the sink
// answered for it, so once the books balance the sink has all it will ever get and the
// comparison with the agents' ledgers is final: a test that loses spans fails at once
// instead of waiting for spans that will never come. After a restart the books do not
// balance (the new process also sends what the old one spilled), so there the wait is
// for the acknowledged spans themselves.
func waitDrained(t *testing.T, ap *apmkitProc, s *sink, snaps ...Snapshot) {
	t.Helper()
	want := map[EntryID]int{}
	for _, snap := range snaps {
		for id := range snap.AckedSet() {
			want[id]++
		}
	}
	waitFor(t, 90*time.Second, "apmkit's uploader drained", func() (bool, string) {
		arrived := s.has(want)
		m := ap.metrics()
		queued := m.sum("apmkit_io_queue_points")
		memory := m.sum("apmkit_io_output_queue_batches")
		spill := m.sum("apmkit_io_spill_batches")
		in := m.sum("apmkit_io_points_in_total", "category=tracing")
		sent := m.sum("apmkit_io_points_sent_total", "category=tracing")
		dropped := 0.0
		for _, v := range tracingDropped(m) {
			dropped += v
		}
		state := fmt.Sprintf("%d of %d acknowledged spans arrived; queue %v points, output memory %v batches, spill %v batches; tracing points in %v, sent %v, dropped %v",
			arrived, len(want), queued, memory, spill, in, sent, dropped)
		empty := queued == 0 && memory == 0 && spill == 0
		return empty && (in == sent+dropped || arrived == len(want)), state
	})
}

// checkNoCallFailed fails if any call of the load failed or had spans rejected.
func checkNoCallFailed(t *testing.T, what string, snap Snapshot) {
	t.Helper()
	if snap.Failed > 0 || snap.Rejected > 0 || len(snap.Unknown) > 0 || len(snap.Errors) > 0 {
		t.Errorf("%s: apmkit did not take every batch: %d calls failed, %d spans rejected, %d spans of unknown fate, errors %v (first: %v)",
			what, snap.Failed, snap.Rejected, len(snap.Unknown), snap.Errors, snap.FirstErr)
	}
}

// tracingDropped is every tracing point the uploader counted as dropped, by reason.
func tracingDropped(m promSet) map[string]float64 {
	out := map[string]float64{}
	for series, v := range m {
		name, labels, _ := strings.Cut(series, "{")
		if !strings.HasPrefix(name, "apmkit_io_") || !strings.Contains(name, "dropped") || v == 0 {
			continue
		}
		if !strings.Contains(labels, "category=tracing") {
			continue
		}
		reason := "?"
		for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if r, ok := strings.CutPrefix(kv, "reason="); ok {
				reason = r
			}
		}
		out[reason] += v
	}
	return out
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// child is a subprocess a test owns: it is killed at cleanup if still running.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// watch waits for a started cmd in the background: drain (may be nil) runs first, since
// reading a pipe to its end must come before Wait; logf is closed once it exited.
func watch(t *testing.T, cmd *exec.Cmd, logf *os.File, drain func()) child {
	c := child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		if drain != nil {
			drain()
		}
		_ = cmd.Wait()
		logf.Close()
		close(c.exited)
	}()
	t.Cleanup(func() {
		if c.running() {
			_ = cmd.Process.Kill() // our own child, by its pid
			<-c.exited
		}
	})
	return c
}

func (c child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}
