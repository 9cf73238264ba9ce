package faulttest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Churn size: 1,000 agents connected at once and 10,000 sessions after the warm-up (each
// a connect, registration, metadata, ping session, one batch, a hold of up to 500 ms and a
// disconnect). The run is bounded by the number of sessions, not by time, so a slow
// machine churns as much as a fast one; on 2 cores it takes about 20 s.
const (
	churnAgents   = 1000
	churnSessions = 10_000
)

// TestAgentChurn makes 1,000 agents connect and disconnect over and over, then checks
// that apmkit's goroutines, live heap and RSS come back to what they were after every
// agent's first session (the baseline: what apmkit keeps per agent run is there by then),
// that no agent is left counted as connected, and that every acknowledged span arrived
// exactly once.
func TestAgentChurn(t *testing.T) {
	short(t)
	s := startSink(t)
	ap := startApmkit(t, s.url, defaultIOConf())

	// Warm-up: every agent connects once, so per-agent-run state exists before the
	// baseline; ppchurn then waits for the test before churning.
	pc := startChurn(t, ap.grpcAddr)
	pc.waitWarm()
	waitFor(t, 30*time.Second, "no agent connected after the warm-up", func() (bool, string) {
		n := ap.metrics().sum("apmkit_pinpoint_connected_agents")
		return n == 0, fmt.Sprintf("%v connected", n)
	})
	base := settle(t, ap)
	// The warm-up's garbage is collected but the runtime returns freed memory to the OS
	// gradually: the RSS baseline is taken once it stopped falling, not before.
	settled, last := 0, base.rssKB
	waitFor(t, 60*time.Second, "apmkit's RSS steady after the warm-up", func() (bool, string) {
		time.Sleep(400 * time.Millisecond)
		base = settle(t, ap)
		if base.rssKB+1024 >= last {
			settled++
		} else {
			settled = 0
		}
		last = min(last, base.rssKB)
		return settled >= 4, fmt.Sprintf("RSS %.1f MiB", mib(base.rssKB))
	})
	pc.resume()
	maxConnected := 0.0
	for pc.running() {
		// Scraped once a second only: /metrics takes apmkit's CPU too.
		maxConnected = max(maxConnected, ap.metrics().sum("apmkit_pinpoint_connected_agents"))
		time.Sleep(time.Second)
	}
	churn := pc.result()
	if churn.Warmup != churnAgents || churn.Sessions != churnSessions || churn.Failed > 0 || len(churn.Ledger.Errors) > 0 {
		t.Errorf("churn: %d warm-up and %d of %d sessions, %d failed, errors %v (first: %v)",
			churn.Warmup, churn.Sessions, churnSessions, churn.Failed, churn.Ledger.Errors, churn.Ledger.FirstErr)
	}
	peakKB := ap.procStatus("VmHWM")

	var now resources
	waitFor(t, 60*time.Second, "goroutines, heap and RSS back to the baseline", func() (bool, string) {
		now = settle(t, ap)
		ok, why := now.within(base)
		return ok, why
	})
	t.Logf("churn: %d sessions of %d agents in %.1f s (up to %v connected at once); baseline %v; after %v; peak RSS %.1f MiB",
		churn.Sessions, churnAgents, churn.Seconds, maxConnected, base, now, mib(peakKB))
	if n := ap.metrics().sum("apmkit_pinpoint_connected_agents"); n != 0 {
		t.Errorf("%v agents still counted as connected after every agent left", n)
	}

	waitDrained(t, ap, s, churn.Ledger)
	view := s.view()
	checkNoCallFailed(t, "churn", churn.Ledger)
	d := compare(churn.Ledger, view, "ch-churn-")
	t.Logf("churn delivery: %v", d)
	checkExactlyOnce(t, d)
}

// resources is what must not grow with connections that come and go.
type resources struct {
	goroutines    float64
	heapBytes     float64 // go_memstats_heap_alloc_bytes right after a GC: the live heap
	skeletonBytes float64 // spans kept to link late chunks: bounded, expires; not a leak
	rssKB         int64
}

// settle collects garbage in apmkit and reads its resources.
func settle(t *testing.T, ap *apmkitProc) resources {
	t.Helper()
	ap.gc()
	m := ap.metrics()
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "apmkit_pinpoint_trace_skeleton_bytes"} {
		if !m.has(name) {
			t.Fatalf("/metrics has no %s (names: %v)", name, m.names("go_"))
		}
	}
	return resources{
		goroutines:    m.sum("go_goroutines"),
		heapBytes:     m.sum("go_memstats_heap_alloc_bytes"),
		skeletonBytes: m.sum("apmkit_pinpoint_trace_skeleton_bytes"),
		rssKB:         ap.procStatus("VmRSS"),
	}
}

// Tolerances over the baseline. A goroutine or a connection's buffers (tens of KiB)
// leaked per session would exceed them many times over after 10,000 sessions.
const (
	goroutineSlack = 5        // the API's own connections, timers
	heapSlack      = 24 << 20 // pools (gRPC buffers, the uploader's) sized by the churn's peak
	rssSlack       = 32 << 10 // kB: heap the runtime has not yet returned to the OS
)

func (r resources) within(base resources) (bool, string) {
	grown := max(0, r.skeletonBytes-base.skeletonBytes)
	// The runtime keeps freed memory up to about its next GC goal (twice the live heap),
	// so RSS may exceed the baseline by twice what the heap legitimately grew.
	heapGrowth := max(0, r.heapBytes-base.heapBytes)
	ok := r.goroutines <= base.goroutines+goroutineSlack &&
		r.heapBytes <= base.heapBytes+heapSlack+grown &&
		r.rssKB <= base.rssKB+rssSlack+int64(2*heapGrowth/1024)
	return ok, fmt.Sprintf("now %v, baseline %v", r, base)
}

func (r resources) String() string {
	return fmt.Sprintf("%v goroutines, heap %.1f MiB (span skeletons %.1f MiB), RSS %.1f MiB",
		r.goroutines, r.heapBytes/(1<<20), r.skeletonBytes/(1<<20), mib(r.rssKB))
}

// churnRun is ppchurn as a subprocess in -pause mode.
type churnRun struct {
	t *testing.T
	child
	out   string
	log   string
	stdin io.WriteCloser
	warm  chan struct{} // ppchurn printed "warm": the warm-up is over
}

// startChurn starts ppchurn: churnAgents agents, a warm-up session each, then (after
// resume) churnSessions sessions.
func startChurn(t *testing.T, addr string) *churnRun {
	t.Helper()
	dir := t.TempDir()
	r := &churnRun{t: t, out: filepath.Join(dir, "churn.json"), log: filepath.Join(dir, "ppchurn.log"), warm: make(chan struct{})}
	r.cmd = exec.Command(bins["ppchurn"], "-addr", addr, "-agents", strconv.Itoa(churnAgents),
		"-sessions", strconv.Itoa(churnSessions), "-run-id", "churn", "-out", r.out, "-limit", "4m", "-pause")
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = logf
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.child = watch(t, r.cmd, logf, func() {
		br := bufio.NewReader(stdout)
		if line, err := br.ReadString('\n'); err == nil && strings.TrimSpace(line) == "warm" {
			close(r.warm)
		}
		_, _ = io.Copy(io.Discard, br)
	})
	return r
}

// waitWarm waits until every agent ran its warm-up session.
func (r *churnRun) waitWarm() {
	r.t.Helper()
	select {
	case <-r.warm:
	case <-r.exited:
		r.t.Fatalf("ppchurn ended during the warm-up\n%s", tail(r.log, 20))
	case <-time.After(3 * time.Minute):
		r.t.Fatalf("ppchurn's warm-up did not end within 3 minutes\n%s", tail(r.log, 20))
	}
}

// resume starts the churn after the warm-up.
func (r *churnRun) resume() {
	r.t.Helper()
	if _, err := io.WriteString(r.stdin, "go\n"); err != nil {
		r.t.Fatalf("ppchurn: %v", err)
	}
}

// result waits for ppchurn's end and reads its result.
func (r *churnRun) result() *ChurnResult {
	r.t.Helper()
	select {
	case <-r.exited:
	case <-time.After(5 * time.Minute):
		r.t.Fatalf("ppchurn did not end within 5 minutes\n%s", tail(r.log, 20))
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		r.t.Fatalf("ppchurn exited %d\n%s", code, tail(r.log, 20))
	}
	raw, err := os.ReadFile(r.out)
	if err != nil {
		r.t.Fatal(err)
	}
	var res ChurnResult
	if err := json.Unmarshal(raw, &res); err != nil {
		r.t.Fatalf("ppchurn result: %v", err)
	}
	r.t.Logf("ppchurn: %s", tail(r.log, 1))
	return &res
}
