package faulttest

import (
	"fmt"
	"testing"
	"time"
)

// TestSpillFull keeps the output down longer than a 1 MiB spill can cover: apmkit must
// keep taking every batch, drop the oldest spilled batches (counted by reason on
// /metrics), keep the spill within its capacity and its memory bounded, stay up, and
// deliver the newest batches once the output is back.
func TestSpillFull(t *testing.T) {
	short(t)
	s := startSink(t)
	c := defaultIOConf()
	c.CapacityMB = 1
	ap := startApmkit(t, s.url, c)
	baseKB := ap.procStatus("VmRSS")
	load := startTestLoad(t, ap.grpcAddr, "spill", 4, 200, 0)
	waitFor(t, 30*time.Second, "the first spans at the sink", func() (bool, string) {
		return s.entryCount() > 0, "none yet"
	})

	// Spans acknowledged from here on are those the outage can cost.
	outageStart := load.Ledger().Snapshot()
	s.set(sinkBusy)
	capacity := float64(c.CapacityMB << 20)
	maxSpill := 0.0
	// Several spills' worth dropped: the eviction has run many times, not once.
	const wantDropped = 20_000
	waitFor(t, 120*time.Second, fmt.Sprintf("%d tracing points dropped as spill_full", wantDropped), func() (bool, string) {
		m := ap.metrics()
		spill := m.sum("apmkit_io_spill_bytes", "output=dataway")
		maxSpill = max(maxSpill, spill)
		dropped := tracingDropped(m)["spill_full"]
		return dropped >= wantDropped, fmt.Sprintf("%v dropped as spill_full, spill %v bytes", dropped, spill)
	})
	// The load stops before the output comes back, so no batch is evicted while the spill
	// drains and the order of what survived is the order of eviction alone.
	if err := load.Stop(); err != nil {
		t.Errorf("load: %v", err)
	}
	if !ap.running() {
		t.Fatal("apmkit exited during the outage")
	}
	hwmKB := ap.procStatus("VmHWM")
	s.set(sinkOK)
	snap := load.Ledger().Snapshot()
	checkNoCallFailed(t, "with the spill full", snap)
	waitDrained(t, ap, s, snap)

	m := ap.metrics()
	view := s.view()
	d := compare(snap, view, loadPrefix("spill"))
	dropped := tracingDropped(m)
	t.Logf("spill of %d MiB full: %v; dropped %v; spill peak %.0f bytes; RSS %.1f MiB at start, peak %.1f MiB",
		c.CapacityMB, d, dropped, maxSpill, mib(baseKB), mib(hwmKB))
	if _, err := ap.get("/v1/ping"); err != nil {
		t.Errorf("apmkit does not answer after the outage: %v", err)
	}
	if maxSpill > capacity {
		t.Errorf("the spill held %.0f bytes, over its capacity %.0f", maxSpill, capacity)
	}
	for reason, n := range dropped {
		if reason != "spill_full" {
			t.Errorf("%v tracing points dropped as %s: only spill_full is expected", n, reason)
		}
	}
	checkConservation(t, m, view, true)
	if len(d.dups) > 0 || len(d.unexpected) > 0 {
		t.Errorf("spans duplicated or never sent: %v", d)
	}
	if len(d.missing) == 0 || float64(len(d.missing)) > dropped["spill_full"] {
		t.Errorf("%d acknowledged spans missing; %v points counted as spill_full: every missing span must be a counted drop", len(d.missing), dropped["spill_full"])
	}
	checkOldestDropped(t, after(snap, outageStart), view, c)
	boundKB := memoryBoundKB(baseKB, c)
	if hwmKB > boundKB {
		t.Errorf("peak RSS %.1f MiB over the bound %.1f MiB (idle %.1f MiB + queues)", mib(hwmKB), mib(boundKB), mib(baseKB))
	}
}

// checkOldestDropped checks that the spill dropped its oldest batches. outage holds the
// spans acknowledged after the output went down; each agent sends one batch at a time, so
// its spans are in the order apmkit queued them. Oldest-first eviction keeps the newest
// spans: every span that survived the outage must come after the last lost one, except
// those of what the spill is retrying when it evicts (spared, though the oldest; see
// spillUnit).
func checkOldestDropped(t *testing.T, outage Snapshot, view sinkView, c ioConf) {
	t.Helper()
	early, lost, kept := 0, 0, 0
	for agent, ids := range outage.Acked {
		last := -1
		for i, id := range ids {
			if view.entries[id] == 0 {
				last = i
				lost++
			} else {
				kept++
			}
		}
		for _, id := range ids[:max(last, 0)] {
			if view.entries[id] > 0 {
				early++
			}
		}
		if len(ids) > 0 && view.entries[ids[len(ids)-1]] == 0 {
			t.Errorf("agent %s: its newest span was dropped, not its oldest", agent)
		}
	}
	oneBatch := (c.BatchPoints/(1+testGen.Events) + 1) * spillUnit()
	t.Logf("spans acknowledged during the outage: %d lost, %d kept, of which %d older than a lost one", lost, kept, early)
	if lost == 0 || early > oneBatch {
		t.Errorf("the spill did not drop its oldest batches: of the spans taken during the outage %d were lost and %d kept, %d of them older than a lost one (at most %d, what the spill retries at once, may be)",
			lost, kept, early, oneBatch)
	}
}

// spillUnit is, in batches, what the spill delivers, spares and evicts as one: a batch
// (the points-bounded uploader; with several requests in flight, a batch sent beside a
// failing one may reach the spill out of order, so one per request), or a spill file,
// which the byte-budget uploader writes for up to spillGroup batches at once. While the
// output fails, the byte-budget uploader tries one spilled batch at a time, so eviction
// spares one file.
func spillUnit() int {
	if uploaderModel.bytes {
		return spillGroup
	}
	return max(1, uploaderModel.inFlight)
}

// spillResent bounds, in batches, what kill -9 makes the spill deliver again: the spill files
// it was delivering, whose progress is recorded on disk only at a graceful stop. The
// byte-budget uploader delivers up to max_in_flight spilled batches at once, oldest first,
// so up to max_in_flight+1 files may be part way (one per batch in flight, and the file of
// the oldest batch not delivered yet).
func spillResent() int {
	if uploaderModel.bytes {
		return spillGroup * (uploaderModel.inFlight + 1)
	}
	return spillUnit()
}
