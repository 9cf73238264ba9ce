package faulttest

import (
	"testing"
	"time"
)

// outageHalf is half of the output outage: 503 answers, then connections closed.
const outageHalf = 15 * time.Second

// TestOutputOutage takes the output down for 30 s under load (15 s of 503 answers, then
// 15 s of connections closed without an answer) and brings it back: apmkit must keep
// taking every batch meanwhile (spilling to disk), and every span it acknowledged must
// reach the sink exactly once.
func TestOutputOutage(t *testing.T) {
	short(t)
	s := startSink(t)
	c := defaultIOConf()
	ap := startApmkit(t, s.url, c)
	load := startTestLoad(t, ap.grpcAddr, "outage", 4, 200, 0)
	waitFor(t, 30*time.Second, "the first spans at the sink", func() (bool, string) {
		return s.entryCount() > 0, "none yet"
	})

	s.set(sinkBusy)
	time.Sleep(outageHalf) // the scenario's length, not a wait for something to happen
	s.set(sinkClose)
	time.Sleep(outageHalf)
	during := ap.metrics()
	s.set(sinkOK)
	// Spans taken while the spill drains go out beside it (new batches first, the spill with
	// the requests they leave), each exactly once.
	time.Sleep(2 * time.Second)
	if err := load.Stop(); err != nil {
		t.Errorf("load: %v", err)
	}
	snap := load.Ledger().Snapshot()
	checkNoCallFailed(t, "during the outage", snap)
	waitDrained(t, ap, s, snap)

	view := s.view()
	d := compare(snap, view, loadPrefix("outage"))
	t.Logf("outage: %v; sink requests by answer %v", d, view.requests)
	checkExactlyOnce(t, d)
	if view.requests[sinkBusy] == 0 || view.requests[sinkClose] == 0 {
		t.Errorf("the outage was not exercised: sink requests by answer %v", view.requests)
	}
	if n := during.sum("apmkit_io_spilled_batches_total"); n == 0 {
		t.Errorf("no batch was spilled during a %s outage: the test did not exercise the spill", 2*outageHalf)
	}
	m := ap.metrics()
	if dropped := tracingDropped(m); len(dropped) > 0 {
		t.Errorf("tracing points dropped: %v", dropped)
	}
	checkConservation(t, m, view, false)
}

// checkConservation checks the uploader's books once it is empty: every tracing point
// taken in was sent or dropped (allowDrops) and the sink counted exactly the lines apmkit
// says it delivered.
func checkConservation(t *testing.T, m promSet, view sinkView, allowDrops bool) {
	t.Helper()
	in := m.sum("apmkit_io_points_in_total", "category=tracing")
	sent := m.sum("apmkit_io_points_sent_total", "category=tracing")
	dropped := 0.0
	for _, v := range tracingDropped(m) {
		dropped += v
	}
	if in == 0 || in != sent+dropped || (!allowDrops && dropped > 0) {
		t.Errorf("uploader books: %v tracing points in, %v sent, %v dropped", in, sent, dropped)
	}
	if got := float64(view.lines["tracing"]); got != sent {
		t.Errorf("the sink counted %v tracing lines, apmkit says it sent %v", got, sent)
	}
}
