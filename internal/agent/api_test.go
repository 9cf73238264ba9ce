package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/cache"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAPI(t *testing.T) {
	// The default [io]: the explorer's local output is on beside the implicit file output.
	a, _ := startAgentMain(t, t.TempDir(), strings.Replace(testMain, "explorer = false\n", "", 1), "")
	base := "http://" + a.APIAddr()
	code, body := get(t, base+"/v1/ping")
	var ping Ping
	if code != 200 || json.Unmarshal([]byte(body), &ping) != nil || ping.Version == "" {
		t.Fatalf("ping %d %s", code, body)
	}
	code, body = get(t, base+"/v1/stats")
	var st struct {
		Inputs []struct {
			Input string `json:"input"`
			Alias string `json:"alias"`
			Stats struct {
				Listeners []string `json:"listeners"`
			} `json:"stats"`
		} `json:"inputs"`
		IO struct {
			Outputs []struct {
				Type string `json:"type"`
			} `json:"outputs"`
		} `json:"io"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Inputs) != 1 || st.Inputs[0].Alias != "127.0.0.1:0" || len(st.Inputs[0].Stats.Listeners) != 3 ||
		len(st.IO.Outputs) != 2 || st.IO.Outputs[0].Type != "file" || st.IO.Outputs[1].Type != "local" {
		t.Fatalf("stats %d %s", code, body)
	}
	code, body = get(t, base+"/metrics")
	for _, m := range []string{"apmkit_io_", "apmkit_pinpoint_connected_agents", `input="pinpoint"`, "go_goroutines", "apmkit_explorer_store_bytes"} {
		if code != 200 || !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if code, _ = get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof served without [http_api] pprof: %d", code)
	}
}

func TestPprofWhenEnabled(t *testing.T) {
	a, _ := startAgentMain(t, t.TempDir(), "[http_api]\nlisten = \"127.0.0.1:0\"\npprof = true\n", "")
	if code, body := get(t, "http://"+a.APIAddr()+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof: %d", code)
	}
}

// TestPingReportsADegradedCache: on a disk without the cache's reserve (here a reserve no
// disk has) apmkit starts anyway, on an in-memory cache, and says so in /v1/ping (still 200),
// /v1/stats and /metrics.
func TestPingReportsADegradedCache(t *testing.T) {
	a, _ := startAgentMain(t, t.TempDir(), "[http_api]\nlisten = \"127.0.0.1:0\"\n[cache]\nmin_free_mb = 1000000000\n", "")
	base := "http://" + a.APIAddr()
	code, body := get(t, base+"/v1/ping")
	var ping Ping
	if code != 200 || json.Unmarshal([]byte(body), &ping) != nil {
		t.Fatalf("ping %d %s", code, body)
	}
	if ping.Status != "degraded" || ping.CacheState != cache.StateMemory || len(ping.Degraded) != 1 ||
		!strings.Contains(ping.Degraded[0], "cache: ") || !strings.Contains(ping.Degraded[0], "disk is full") {
		t.Fatalf("ping on a full disk: %s", body)
	}
	code, body = get(t, base+"/v1/stats")
	var st Stats
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Cache == nil || st.Cache.State != cache.StateMemory ||
		st.Cache.ReserveBytes != 1000000000<<20 || st.Status != "degraded" {
		t.Fatalf("stats on a full disk: %d %s", code, body)
	}
	_, body = get(t, base+"/metrics")
	for _, m := range []string{`apmkit_cache_state{state="memory"} 1`, `apmkit_cache_state{state="ok"} 0`, `apmkit_cache_writes_refused_total{reason="disk_full"} 0`, "apmkit_cache_reserve_bytes 1.048576e+15"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

// TestPingOK: a healthy apmkit says so.
func TestPingOK(t *testing.T) {
	a, _ := startAgent(t, t.TempDir(), "")
	_, body := get(t, "http://"+a.APIAddr()+"/v1/ping")
	var ping Ping
	if json.Unmarshal([]byte(body), &ping) != nil || ping.Status != "ok" || ping.CacheState != cache.StateOK || len(ping.Degraded) != 0 {
		t.Fatalf("ping: %s", body)
	}
}
