package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/pipeline"
	"github.com/apmkit/apmkit/point"
)

// traceSet is a tracing output by trace id.
type traceSet map[string][]*point.Point

func byTrace(pts []*point.Point) traceSet {
	out := traceSet{}
	for _, p := range pts {
		id := str(p, "trace_id")
		out[id] = append(out[id], p)
	}
	return out
}

func recording(t testing.TB, name string) *replay.Recording {
	t.Helper()
	for _, r := range recordings(t) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("recording %s not found", name)
	return nil
}

// replayDecided replays rec into an apmkit with pinpointConf, waits until the pipeline has
// decided every trace after its decision_wait (not at the stop), then stops apmkit and
// returns its tracing output and the pipeline's stats before the stop.
func replayDecided(t *testing.T, rec *replay.Recording, pinpointConf string) (traceSet, pipeline.Stats) {
	t.Helper()
	dir := t.TempDir()
	a, in := startAgent(t, dir, pinpointConf)
	replayInto(t, in, rec)
	pipe := a.inputs[0].pipe
	deadline := time.Now().Add(time.Minute)
	for pipe.Stats().PendingTraces > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("traces still waiting for a decision: %+v", pipe.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := pipe.Stats()
	stopAgent(t, a)
	return byTrace(readOutput(t, dir, point.Tracing)), st
}

// TestSamplingKeepsWholeTraces replays a real Go agent's recording (frontend calling
// backend, both spans failing in /error requests, async chunks, chunked spans) through the
// whole apmkit in every trace decision mode: every trace is in the output whole (every span
// and event of both agents) or not at all, decided once, after decision_wait; where the
// mode says exactly which traces stay, they are exactly those.
func TestSamplingKeepsWholeTraces(t *testing.T) {
	rec := recording(t, "go-agent-batch-200")
	full := t.TempDir()
	a, in := startAgent(t, full, "")
	replayInto(t, in, rec)
	stopAgent(t, a)
	all := byTrace(readOutput(t, full, point.Tracing))
	errs, roots := map[string]bool{}, map[string]string{}
	for id, pts := range all {
		for _, p := range pts {
			if tag(p, "status") == "error" {
				errs[id] = true
			}
			if tag(p, "span_type") == "entry" && str(p, "parent_id") == "0" {
				roots[id] = tag(p, "service") + " " + str(p, "resource")
			}
		}
	}
	if len(all) != 200 || len(errs) != 30 || len(roots) != 200 {
		t.Fatalf("unfiltered: %d traces, %d with errors, %d roots", len(all), len(errs), len(roots))
	}

	const wait = "decision_wait = \"1s\"\n"
	for _, c := range []struct {
		name, conf string
		want       func(id string) bool              // the exact set kept, when known
		check      func(t *testing.T, kept traceSet) // further checks
	}{
		{name: "rate 0.5", conf: "[inputs.pinpoint.sampler]\nsampling_rate = 0.5\n",
			want: func(id string) bool { return errs[id] || pipeline.KeptByRate(id, 0.5) }},
		{name: "rate 0.1", conf: "[inputs.pinpoint.sampler]\nsampling_rate = 0.1\n",
			want: func(id string) bool { return errs[id] || pipeline.KeptByRate(id, 0.1) }},
		{name: "rate 0 keeps exactly the traces with an error", conf: "[inputs.pinpoint.sampler]\nsampling_rate = 0\n",
			want: func(id string) bool { return errs[id] }},
		{name: "close_resource reads the root", conf: "[inputs.pinpoint.close_resource]\n\"frontend\" = [\"^/slow$\"]\n\"backend\" = [\"^/api/users$\"]\n",
			want: func(id string) bool { return roots[id] != "frontend /slow" }},
		{name: "keep_rare_resource with rate 0", conf: "keep_rare_resource = true\n[inputs.pinpoint.sampler]\nsampling_rate = 0\n",
			check: func(t *testing.T, kept traceSet) {
				perRoot := map[string]int{}
				for id := range kept {
					if !errs[id] {
						perRoot[roots[id]]++
					}
				}
				for id := range errs {
					if kept[id] == nil {
						t.Errorf("error trace %s dropped", id)
					}
				}
				// Each (service, resource) is rare once: its first trace, with the backend's
				// /api/users shared by three frontend URLs.
				for _, r := range []string{"frontend /ok", "frontend /async", "frontend /slow", "frontend /many"} {
					if perRoot[r] < 1 || perRoot[r] > 2 {
						t.Errorf("%s: %d ok traces kept, want the first (and one more for a rare callee at most)", r, perRoot[r])
					}
				}
			}},
		{name: "smart sampler", conf: "[inputs.pinpoint.smart_sampler]\nenabled = true\n",
			check: func(t *testing.T, kept traceSet) {
				perRoot := map[string]int{}
				for id := range kept {
					perRoot[roots[id]]++
				}
				// Quotas per minute; the replay may straddle two minutes. The CPU band is the
				// test machine's: between the lowest and the highest quota.
				for r, q := range map[string][2]int{
					"frontend /ok": {5, 20}, "frontend /async": {5, 20}, "frontend /many": {5, 20},
					"frontend /slow":  {10, 20}, // 20 requests, all slow (900 ms): the slow bucket
					"frontend /error": {10, 30}, // 30 requests, all failing: the error bucket
				} {
					if n := perRoot[r]; n < q[0] || n > 2*q[1] {
						t.Errorf("%s: %d traces kept, want %d..%d", r, n, q[0], 2*q[1])
					}
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			kept, st := replayDecided(t, rec, wait+c.conf)
			for id, pts := range kept {
				if len(pts) != len(all[id]) {
					t.Errorf("trace %s (%s) kept partially: %d of %d spans", id, roots[id], len(pts), len(all[id]))
				}
			}
			if st.TracesKept+st.TracesDropped != int64(len(all)) || st.EarlyDecisions != 0 || st.TracesKept != int64(len(kept)) {
				t.Errorf("pipeline stats %+v: want each of the %d traces decided once, after the wait, %d kept", st, len(all), len(kept))
			}
			if c.want != nil {
				var missing, extra []string
				for id := range all {
					if w, got := c.want(id), kept[id] != nil; w && !got {
						missing = append(missing, id+" "+roots[id])
					} else if got && !w {
						extra = append(extra, id+" "+roots[id])
					}
				}
				if len(missing) > 0 || len(extra) > 0 {
					t.Errorf("kept %d traces; missing %d %s; not expected %d %s", len(kept), len(missing), few(missing), len(extra), few(extra))
				}
			}
			if c.check != nil {
				c.check(t, kept)
			}
			if len(kept) == 0 || len(kept) == len(all) {
				t.Errorf("kept %d of %d traces: nothing was sampled", len(kept), len(all))
			}
		})
	}
}

func few(ids []string) string {
	if len(ids) > 3 {
		return strings.Join(ids[:3], ", ") + "..."
	}
	return strings.Join(ids, ", ")
}
