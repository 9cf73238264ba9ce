package explorer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/internal/agent/agenttest"
)

// site is a whole apmkit (Pinpoint input, pipeline, uploader, local output, explorer) on
// loopback ports that a recording was replayed into.
type site struct {
	base     string // http://127.0.0.1:port
	m        replay.Manifest
	from, to int64 // epoch ms: around everything the recording holds
}

func recording(t testing.TB, name string) *replay.Recording {
	t.Helper()
	recs, err := replay.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no recording %s", name)
	return nil
}

// replayed starts apmkit, replays rec into it and waits until the local output has stored
// every span the manifest counts and every metric point the input made.
func replayed(t testing.TB, rec *replay.Recording) *site {
	t.Helper()
	a := agenttest.Start(t)
	s := &site{base: "http://" + a.APIAddr(), m: rec.Manifest}
	s.from = s.m.Int("time_range.span_start_time_ms.min") - 60_000
	s.to = s.m.Int("time_range.agent_stat_timestamp_ms.max") + 60_000
	var st stats
	s.get(t, "/v1/stats", nil, &st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rec.Replay(ctx, replay.Targets{Agent: st.Inputs[0].Stats.Listeners[0]})
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("replay: %v %v", err, res)
	}
	spans := s.m.Int("messages.PSpan") + s.m.Int("traces.span_events.total")
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.get(t, "/v1/stats", nil, &st)
		local, metricIn := st.local(), st.pointsIn("metric")
		if local.PointsSentBy["tracing"] == spans && local.PointsSentBy["metric"] == metricIn && metricIn > 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the local output stored %v, want %d spans and the %d metric points", local.PointsSentBy, spans, metricIn)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stats is what the tests read of /v1/stats.
type stats struct {
	Inputs []struct {
		Stats struct {
			Listeners []string `json:"listeners"`
		} `json:"stats"`
	} `json:"inputs"`
	IO struct {
		Categories []struct {
			Category string `json:"category"`
			PointsIn int64  `json:"points_in"`
		} `json:"categories"`
		Outputs []struct {
			Type         string           `json:"type"`
			PointsSentBy map[string]int64 `json:"points_sent_by_category"`
		} `json:"outputs"`
	} `json:"io"`
}

func (st *stats) local() (out struct{ PointsSentBy map[string]int64 }) {
	for _, o := range st.IO.Outputs {
		if o.Type == "local" {
			out.PointsSentBy = o.PointsSentBy
		}
	}
	return out
}

func (st *stats) pointsIn(cat string) int64 {
	for _, c := range st.IO.Categories {
		if c.Category == cat {
			return c.PointsIn
		}
	}
	return 0
}

// get fetches path with the query into v, failing the test on anything but 200.
func (s *site) get(t testing.TB, path string, q url.Values, v any) {
	t.Helper()
	u := s.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// inRange is a query over the recording's whole time, with the given parameters (attr
// repeats, the others replace).
func (s *site) inRange(kv ...string) url.Values {
	q := url.Values{"from": {fmt.Sprint(s.from)}, "to": {fmt.Sprint(s.to)}}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "attr" {
			q.Add(kv[i], kv[i+1])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}
