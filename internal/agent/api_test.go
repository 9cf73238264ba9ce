package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
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
	a, _ := startAgent(t, t.TempDir(), "")
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
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Inputs) != 1 || len(st.Inputs[0].Stats.Listeners) != 3 || len(st.IO.Outputs) != 1 {
		t.Fatalf("stats %d %s", code, body)
	}
	code, body = get(t, base+"/metrics")
	for _, m := range []string{"apmkit_io_", "apmkit_pinpoint_connected_agents", `input="pinpoint"`, "go_goroutines"} {
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
