package faulttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSlowOutput makes every output request take 2 s under load (ppload's agents plus
// the test's own): apmkit's memory must stay bounded (the output's memory queue full, the
// rest spilled), agents must not notice (no call or stream error, every ping on the one
// PingSession answered), and once the output is fast again everything acknowledged must
// arrive exactly once.
func TestSlowOutput(t *testing.T) {
	short(t)
	s := startSink(t)
	s.setSlow(2 * time.Second)
	c := defaultIOConf()
	ap := startApmkit(t, s.url, c)
	baseKB := ap.procStatus("VmRSS")

	own := startTestLoad(t, ap.grpcAddr, "slow", 2, 50, 200*time.Millisecond)
	const pploadAgents = 20
	pp := startPpload(t, ap.grpcAddr, "-agents", strconv.Itoa(pploadAgents), "-rate", "1500", "-duration", "20s",
		"-run-id", "slowpp", "-ping-every", "500ms", "-deadline", "30s", "-events", "8")
	wantConnected := float64(len(own.Agents()) + pploadAgents)
	maxMemory := 0.0
	waitFor(t, 30*time.Second, "every agent connected (its ping session open)", func() (bool, string) {
		m := ap.metrics()
		maxMemory = max(maxMemory, m.sum("apmkit_io_output_queue_batches"))
		n := m.sum("apmkit_pinpoint_connected_agents")
		return n == wantConnected, fmt.Sprintf("%v of %v connected", n, wantConnected)
	})
	// Sample the output's memory queue while ppload runs; see memoryQueueBound.
	for pp.running() {
		maxMemory = max(maxMemory, ap.metrics().sum("apmkit_io_output_queue_batches"))
		time.Sleep(200 * time.Millisecond)
	}
	sum := pp.wait()
	hwmKB := ap.procStatus("VmHWM")
	m := ap.metrics()
	if err := own.Stop(); err != nil {
		t.Errorf("the test's agents: %v", err)
	}
	snap := own.Ledger().Snapshot()
	checkNoCallFailed(t, "the test's agents", snap)
	if len(sum.Errors) > 0 || sum.Lost > 0 || sum.Rejected > 0 {
		t.Errorf("ppload's agents saw errors with a slow output: errors %v (first: %v), %d span messages lost, %d rejected",
			sum.Errors, sum.FirstErrors, sum.Lost, sum.Rejected)
	}
	if snap.Pings == 0 || sum.Messages["PPing"] <= pploadAgents {
		t.Errorf("pings answered: %d on the test's sessions, %d on ppload's; want several per session", snap.Pings, sum.Messages["PPing"])
	}
	if spilled := m.sum("apmkit_io_spilled_batches_total"); spilled == 0 || maxMemory > float64(c.memoryQueueBound()) {
		t.Errorf("output memory queue peaked at %v batches (bound %d), %v batches spilled: the slow output was not absorbed as designed", maxMemory, c.memoryQueueBound(), spilled)
	}
	boundKB := memoryBoundKB(baseKB, c)
	t.Logf("slow output: RSS %.1f MiB idle, peak %.1f MiB (bound %.1f); output memory queue peak %v batches; %v spilled; pings %d + %d; ppload %d spans",
		mib(baseKB), mib(hwmKB), mib(boundKB), maxMemory, m.sum("apmkit_io_spilled_batches_total"), snap.Pings, sum.Messages["PPing"], sum.Spans)
	if hwmKB > boundKB {
		t.Errorf("peak RSS %.1f MiB over the bound %.1f MiB (idle %.1f MiB + queues)", mib(hwmKB), mib(boundKB), mib(baseKB))
	}

	s.set(sinkOK)
	waitDrained(t, ap, s, snap)
	view := s.view()
	d := compare(snap, view, loadPrefix("slow"))
	t.Logf("the test's agents: %v", d)
	checkExactlyOnce(t, d)
	// ppload reports counts, not ids: its spans at the sink (trace ids ppl-slowpp-...)
	// must be as many as it had acknowledged, none twice.
	ppArrived, ppDups := 0, 0
	for id, n := range view.entries {
		if strings.HasPrefix(id.Trace, "ppl-slowpp-") {
			ppArrived++
			ppDups += n - 1
		}
	}
	if int64(ppArrived) != sum.Spans || ppDups > 0 {
		t.Errorf("ppload: %d spans acknowledged, %d arrived, %d twice", sum.Spans, ppArrived, ppDups)
	}
	checkConservation(t, ap.metrics(), view, false)
}

// pploadRun is ppload as a subprocess.
type pploadRun struct {
	t *testing.T
	child
	out bytes.Buffer
	log string
}

// pploadSummary is the part of ppload's JSON summary the tests read.
type pploadSummary struct {
	Spans       int64             `json:"spans"`
	Rejected    int64             `json:"rejected"`
	Lost        int64             `json:"lost_span_messages"`
	Errors      map[string]int64  `json:"errors"`
	FirstErrors map[string]string `json:"first_errors"`
	Messages    map[string]int64  `json:"messages"`
}

func startPpload(t *testing.T, addr string, args ...string) *pploadRun {
	t.Helper()
	r := &pploadRun{t: t, log: filepath.Join(t.TempDir(), "ppload.log")}
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bins["ppload"], append([]string{"-addr", addr, "-transport", "batch"}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.child = watch(t, r.cmd, logf, nil)
	return r
}

// wait waits for ppload's end (bounded) and parses its summary line.
func (r *pploadRun) wait() pploadSummary {
	r.t.Helper()
	select {
	case <-r.exited:
	case <-time.After(3 * time.Minute):
		r.t.Fatalf("ppload did not finish within 3 minutes\n%s", tail(r.log, 20))
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		r.t.Fatalf("ppload exited %d\n%s", code, tail(r.log, 20))
	}
	var s pploadSummary
	lines := bytes.Split(bytes.TrimSpace(r.out.Bytes()), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &s); err != nil {
		r.t.Fatalf("ppload summary %q: %v", lines[len(lines)-1], err)
	}
	return s
}
