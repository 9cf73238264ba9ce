package faulttest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOutputCatchesUp fails the output for a few seconds (503) under a steady load it can
// carry (ppload's 600 spans/s plus the test's own agents; the sink answers in 50 ms;
// max_in_flight at its default): what was spilled meanwhile must drain while the load still
// runs, beside the new batches (which must not wait behind the spill, to be spilled in turn),
// so the spill is empty again before the load ends; nothing may be dropped, and every
// acknowledged span must arrive exactly once.
//
// The rate leaves the output room to catch up even when the machine is busy: the sink runs in
// this test process, under the race detector, and spends about 50 ms of CPU on a batch of
// 1,000 points.
func TestOutputCatchesUp(t *testing.T) {
	short(t)
	const (
		latency = 50 * time.Millisecond
		outage  = 4 * time.Second
	)
	s := startSink(t)
	s.setSlow(latency)
	c := defaultIOConf()
	// The defaults: batches of 1,000 points, 16 of them (or a quarter of queue_max_mb) in
	// an output's memory queue. Smaller bounds spill on every burst of a healthy load.
	c.QueueMB, c.BatchPoints, c.QueueBatches = 16, 1000, 16
	ap := startApmkit(t, s.url, c)
	own := startTestLoad(t, ap.grpcAddr, "catchup", 1, 20, 0)
	pp := startPpload(t, ap.grpcAddr, "-agents", "10", "-rate", "600", "-duration", "25s",
		"-run-id", "catchup", "-events", "8", "-deadline", "30s")
	waitFor(t, 30*time.Second, "ppload's spans at the sink", func() (bool, string) {
		n := s.entryCount()
		return n > 1000, fmt.Sprintf("%d spans at the sink", n)
	})
	before := ap.metrics()

	s.set(sinkBusy)
	peak := 0.0
	for end := time.Now().Add(outage); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		peak = max(peak, ap.metrics().sum("apmkit_io_spill_batches"))
	}
	s.setSlow(latency)
	backAt := time.Now()
	if peak == 0 {
		t.Fatalf("nothing was spilled during a %s outage: the test did not exercise the spill", outage)
	}
	// The output delivers again once apmkit's next attempt (at most retry_max away) gets
	// through; from then on it keeps up, so new batches go out beside the spill instead of
	// into it. Only a group the spill writer took while the output still failed may land
	// after this point.
	var spilledBack float64
	waitFor(t, 30*time.Second, "the output's state ok again", func() (bool, string) {
		m := ap.metrics()
		spilledBack = m.sum("apmkit_io_spilled_batches_total")
		ok := m.sum("apmkit_io_output_state", "state=ok")
		return ok == 1, fmt.Sprintf("state ok = %v", ok)
	})

	// The spill must be empty again while ppload still sends: polled, bounded by the
	// load's end (ppload's -duration), not by a time the drain must take.
	var left, spilledEmpty float64
	var running bool
	waitFor(t, time.Minute, "the spill empty again, or the load's end", func() (bool, string) {
		running = pp.running()
		m := ap.metrics()
		left, spilledEmpty = m.sum("apmkit_io_spill_batches"), m.sum("apmkit_io_spilled_batches_total")
		return left == 0 || !running, fmt.Sprintf("%v batches in the spill", left)
	})
	caughtUp := time.Since(backAt)
	if left > 0 || !running {
		t.Errorf("the load ended with %v batches in the spill (peak %v): the output did not catch up while the load ran", left, peak)
	}
	if n := spilledEmpty - spilledBack; n > spillGroup {
		t.Errorf("%v batches spilled while the output delivered and the spill drained (at most one spill writer's group, %d, may land then): new batches waited behind the spill", n, spillGroup)
	}

	sum := pp.wait()
	if err := own.Stop(); err != nil {
		t.Errorf("the test's agents: %v", err)
	}
	snap := own.Ledger().Snapshot()
	checkNoCallFailed(t, "the test's agents", snap)
	if len(sum.Errors) > 0 || sum.Lost > 0 || sum.Rejected > 0 {
		t.Errorf("ppload's agents saw errors: %v (first: %v), %d span messages lost, %d rejected",
			sum.Errors, sum.FirstErrors, sum.Lost, sum.Rejected)
	}
	waitDrained(t, ap, s, snap)

	m := ap.metrics()
	view := s.view()
	d := compare(snap, view, loadPrefix("catchup"))
	t.Logf("output failed %s under load: spill peak %v batches, empty again %s after the output came back; batches spilled: %v before the failure, %v until it delivered again, %v while the spill drained, %v in all; sink requests %v; the test's agents: %v; ppload %d spans",
		outage, peak, caughtUp.Round(100*time.Millisecond), before.sum("apmkit_io_spilled_batches_total"), spilledBack,
		spilledEmpty-spilledBack, m.sum("apmkit_io_spilled_batches_total"), view.requests, d, sum.Spans)
	checkExactlyOnce(t, d)
	ppArrived, ppDups := 0, 0
	for id, n := range view.entries {
		if strings.HasPrefix(id.Trace, "ppl-catchup-") {
			ppArrived++
			ppDups += n - 1
		}
	}
	if int64(ppArrived) != sum.Spans || ppDups > 0 || sum.Spans == 0 {
		t.Errorf("ppload: %d spans acknowledged, %d arrived, %d twice", sum.Spans, ppArrived, ppDups)
	}
	if view.requests[sinkBusy] == 0 {
		t.Errorf("the output never answered 503: sink requests by answer %v", view.requests)
	}
	if n := m.sum("apmkit_io_points_dropped_total"); n > 0 {
		t.Errorf("%v points dropped (%v)", n, tracingDropped(m))
	}
	checkConservation(t, m, view, false)
}
