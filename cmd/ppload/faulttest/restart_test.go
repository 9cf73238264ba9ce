package faulttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSIGTERMRestart stops apmkit with SIGTERM under load while its output is down, so
// the graceful stop must put what it holds into the spill, then starts it again on the
// same data dir: every span acknowledged before or after the restart must reach the sink
// exactly once once the output is back.
func TestSIGTERMRestart(t *testing.T) {
	short(t)
	s := startSink(t)
	c := defaultIOConf()
	ap := startApmkit(t, s.url, c)
	load := startTestLoad(t, ap.grpcAddr, "sigterm", 4, 200, 0)
	waitFor(t, 30*time.Second, "the first spans at the sink", func() (bool, string) {
		return s.entryCount() > 0, "none yet"
	})
	s.set(sinkBusy)
	waitFor(t, 30*time.Second, "batches in the spill", func() (bool, string) {
		n := ap.metrics().sum("apmkit_io_spill_batches")
		return n >= 20, fmt.Sprintf("%v batches in the spill", n)
	})

	if code := ap.terminate(); code != 0 {
		t.Fatalf("apmkit exited %d on SIGTERM, want 0", code)
	}
	beforeRestart := load.Ledger().Snapshot().AckedCount()
	files := spillFiles(t, ap)
	if files == 0 {
		t.Fatal("SIGTERM with the output down left no batch in the spill")
	}
	// The load goes on while apmkit is down: those calls fail and their spans are of
	// unknown fate, as for a real agent.
	ap.restart()
	if n := ap.metrics().sum("apmkit_io_spill_batches"); n == 0 {
		t.Fatalf("the restarted apmkit does not see the %d spilled batches", files)
	}
	waitFor(t, 60*time.Second, "the agents' spans acknowledged again after the restart", func() (bool, string) {
		n := load.Ledger().Snapshot().AckedCount()
		return n > beforeRestart+100, "no more acknowledgements yet"
	})
	s.set(sinkOK)
	if err := load.Stop(); err != nil {
		t.Errorf("load: %v", err)
	}
	snap := load.Ledger().Snapshot()
	waitDrained(t, ap, s, snap)

	view := s.view()
	d := compare(snap, view, loadPrefix("sigterm"))
	t.Logf("SIGTERM with %d spill files left, restart: %v; calls failed while apmkit was down: %d %v", files, d, snap.Failed, snap.Errors)
	checkExactlyOnce(t, d)
	m := ap.metrics()
	checkMetadataSurvived(t, m)
	if dropped := tracingDropped(m); len(dropped) > 0 {
		t.Errorf("tracing points dropped after the restart: %v", dropped)
	}
}

// checkMetadataSurvived checks the restarted process named every span: the agents sent
// their metadata once, to the first process, so the names came from the cache on disk.
func checkMetadataSurvived(t *testing.T, m promSet) {
	t.Helper()
	if !m.has("apmkit_pinpoint_trace_unresolved_total") && !m.has("apmkit_pinpoint_trace_spans_total") {
		t.Fatalf("/metrics has no apmkit_pinpoint_trace_* metrics (names: %v)", m.names("apmkit_pinpoint_trace"))
	}
	if m.sum("apmkit_pinpoint_trace_spans_total") == 0 {
		t.Errorf("the restarted apmkit assembled no span")
	}
	if n := m.sum("apmkit_pinpoint_trace_unresolved_total"); n > 0 {
		t.Errorf("the restarted apmkit wrote %v placeholders: the agents' metadata did not survive in the cache", n)
	}
}

// spillFiles counts the batches in the dataway output's spill folder.
func spillFiles(t *testing.T, ap *apmkitProc) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(ap.dataDir, "spill", "dataway"))
	if err != nil {
		t.Fatalf("spill folder: %v", err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".lp.gz") {
			n++
		}
	}
	return n
}

// TestKill9 kills apmkit with SIGKILL under load while its output is slow (so both the
// memory queues and the spill hold batches), then starts it again on the same data dir.
// What is lost must be within what the configured queues hold in memory; the data dir
// must open again (cache and spill), the spill must drain, and spans acknowledged after
// the restart must all arrive.
func TestKill9(t *testing.T) {
	short(t)
	s := startSink(t)
	// Far slower than the load (about 500 of its 2,500 points/s): batches fill the
	// memory queue, then go to the spill.
	s.setSlow(time.Second)
	c := defaultIOConf()
	ap := startApmkit(t, s.url, c)
	load := startTestLoad(t, ap.grpcAddr, "kill", 4, 200, 0)
	// The spill must hold twice what memory can before the kill: a spill that did not
	// survive the kill would then lose more than the bound below allows. (The spill's
	// spans are estimated as full batches, so this is only about twice.)
	waitFor(t, 90*time.Second, "the spill holding twice what memory can", func() (bool, string) {
		n := ap.metrics().sum("apmkit_io_spill_batches")
		bound := c.memorySpans(testGen.Events, s.minSpanBytes(testGen.Events))
		spans := int(n) * c.BatchPoints / (1 + testGen.Events)
		return s.entryCount() > 0 && spans >= 2*bound, fmt.Sprintf("%d spans at the sink; %v batches (about %d spans) in the spill, memory holds %d at most", s.entryCount(), n, spans, bound)
	})

	ap.kill9()
	// Every answer received before the kill is in this snapshot; calls in flight at the
	// kill fail and are of unknown fate.
	before := load.Ledger().Snapshot()
	ap.restart()
	s.set(sinkOK)
	waitFor(t, 60*time.Second, "the agents' spans acknowledged again after the restart", func() (bool, string) {
		n := load.Ledger().Snapshot().AckedCount()
		return n > before.AckedCount()+100, "no more acknowledgements yet"
	})
	if err := load.Stop(); err != nil {
		t.Errorf("load: %v", err)
	}
	all := load.Ledger().Snapshot()
	waitDrained(t, ap, s, after(all, before))

	view := s.view()
	d := compare(all, view, loadPrefix("kill"))
	beforeSet := before.AckedSet()
	lostBefore, lostAfter := 0, 0
	for _, id := range d.missing {
		if beforeSet[id] > 0 {
			lostBefore++
		} else {
			lostAfter++
		}
	}
	// What the uploader can hold in memory (see memorySpans).
	bound := c.memorySpans(testGen.Events, s.minSpanBytes(testGen.Events))
	t.Logf("kill -9: %d of %d spans acknowledged before the kill were lost (bound %d: %s); %d duplicated; %v",
		lostBefore, before.AckedCount(), bound, memoryText(c, s), len(d.dups), d)
	if lostBefore > bound {
		t.Errorf("kill -9 lost %d acknowledged spans, more than the queues can hold in memory (%d)", lostBefore, bound)
	}
	if lostAfter > 0 {
		t.Errorf("%d spans acknowledged after the restart never arrived", lostAfter)
	}
	if len(d.unexpected) > 0 {
		t.Errorf("spans arrived that were never sent: %v", few(d.unexpected))
	}
	// What the spill was delivering when the process died is delivered again: the spill
	// files being delivered (see spillResent), whose progress is recorded only at a
	// graceful stop.
	if maxDups := (c.BatchPoints/(1+testGen.Events) + 1) * spillResent(); len(d.dups) > maxDups {
		t.Errorf("%d spans arrived twice, more than the spill files being delivered hold (%d)", len(d.dups), maxDups)
	}
	m := ap.metrics()
	checkMetadataSurvived(t, m)
	if n := m.sum("apmkit_io_points_dropped_total", "reason=spill_corrupt"); n > 0 {
		t.Errorf("the spill left by kill -9 had unreadable batches: %v points dropped", n)
	}
	if dropped := tracingDropped(m); len(dropped) > 0 {
		t.Errorf("tracing points dropped after the restart: %v", dropped)
	}
}

// after is the part of all acknowledged after before was taken (per agent, answers are
// appended in order).
func after(all, before Snapshot) Snapshot {
	out := Snapshot{Acked: map[string][]EntryID{}}
	for agent, ids := range all.Acked {
		out.Acked[agent] = ids[len(before.Acked[agent]):]
	}
	return out
}

// memoryText says what memorySpans counted, for the log.
func memoryText(c ioConf, s *sink) string {
	if uploaderModel.bytes {
		return fmt.Sprintf("queue_max_mb %d over spans of at least %d bytes, plus %d batch cuts", c.QueueMB, s.minSpanBytes(testGen.Events), c.memoryBatches())
	}
	return fmt.Sprintf("%d points in memory at most, %d per span", c.memoryPoints(), 1+testGen.Events)
}
