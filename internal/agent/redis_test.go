package agent

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/internal/redistest"
	"github.com/apmkit/apmkit/point"
)

// redisMain is the main config of an apmkit whose cache is in Redis.
func redisMain(url, prefix string) string {
	return testMain + fmt.Sprintf("[cache]\nredis_url = %q\nredis_key_prefix = %q\n", url, prefix)
}

// TestReplayWithRedisCache: with redis_url the input's state lives in Redis: a recording
// replayed through a whole apmkit gives exactly the recording's facts, and Redis holds the
// agent runs it sent, as anything else reading the same keys sees them.
func TestReplayWithRedisCache(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "e2e-password"})
	rec := recording(t, "go-agent-batch-200")
	dataDir := t.TempDir()
	a, in := startAgentMain(t, dataDir, redisMain(srv.URL(), "e2e:"), "")
	if st := a.Stats().Cache; st == nil || st.Backend != "redis" || st.Redis == nil || strings.Contains(st.Redis.URL, "e2e-password") {
		t.Fatalf("cache stats: %+v, want the redis backend with its URL masked", st)
	}
	replayInto(t, in, rec)
	stopAgent(t, a)
	checkSpans(t, readOutput(t, dataDir, point.Tracing), rec.Manifest)
	checkMetrics(t, readOutput(t, dataDir, point.Metric), rec.Manifest)

	want := manifestAgents(t, rec.Manifest)
	if got := storedAgents(t, cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "e2e:"}); !slices.Equal(got, want) {
		t.Fatalf("agent runs in Redis: %q, want the recording's %q", got, want)
	}
}

// manifestAgents lists the recording's agent runs as agentId^startTime, sorted.
func manifestAgents(t *testing.T, m map[string]any) []string {
	t.Helper()
	list, _ := m["agents"].([]any)
	var out []string
	for _, a := range list {
		agent, _ := a.(map[string]any)
		out = append(out, fmt.Sprintf("%v^%v", agent["agentid"], agent["starttime"]))
	}
	if len(out) == 0 {
		t.Fatal("the manifest lists no agents")
	}
	slices.Sort(out)
	return out
}

// storedAgents reads the agent runs the Pinpoint input stored (its alias is its address,
// 127.0.0.1:0), through a backend of its own.
func storedAgents(t *testing.T, cfg cache.Config) []string {
	t.Helper()
	r, err := cache.OpenRedis(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	store, err := meta.NewStore(r.Namespace("pinpoint@127.0.0.1:0"), meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.Agents()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rec := range recs {
		out = append(out, rec.AgentKey.String())
	}
	slices.Sort(out)
	return out
}

// TestPingReportsRedisDown: when Redis stops, the first call that needs it fails (here the
// size asked by /v1/stats) and /v1/ping says redis_down, with the masked URL, while /metrics
// counts the failure; once Redis is back, ping says ok again.
func TestPingReportsRedisDown(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "ping-password"})
	a, _ := startAgentMain(t, t.TempDir(), redisMain(srv.URL(), "ping:"), "")
	base := "http://" + a.APIAddr()
	srv.Stop(t)
	if code, body := get(t, base+"/v1/stats"); code != 200 {
		t.Fatalf("stats %d %s", code, body)
	}
	var ping Ping
	_, body := get(t, base+"/v1/ping")
	if json.Unmarshal([]byte(body), &ping) != nil || ping.Status != "degraded" || ping.CacheState != cache.StateRedisDown ||
		len(ping.Degraded) != 1 || !strings.Contains(ping.Degraded[0], "cache: redis at redis://:****@"+srv.Addr+" unavailable since") {
		t.Fatalf("ping with redis stopped: %s", body)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{`apmkit_cache_state{state="redis_down"} 1`, `apmkit_cache_redis_errors_total{op="get"} `,
		`apmkit_cache_redis_fallback_writes `, `apmkit_cache_writes_refused_total{reason="redis_unavailable"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, s := range []string{body, metrics} {
		if strings.Contains(s, "ping-password") {
			t.Fatalf("the password shows: %s", s)
		}
	}

	srv.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body = get(t, base+"/v1/ping")
		if json.Unmarshal([]byte(body), &ping) == nil && ping.Status == "ok" && ping.CacheState == cache.StateOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping 30s after redis restarted: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReplayWhileRedisIsDown: Redis stops right after apmkit started and the whole
// recording arrives during the outage. The input serves from the cache's memory fallback
// (metadata, agent info, pending chunks): the output is exactly the recording's facts, and
// once Redis is back it holds what the input stored.
func TestReplayWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := recording(t, "go-agent-batch-200")
	dataDir := t.TempDir()
	a, in := startAgentMain(t, dataDir, redisMain(srv.URL(), "down:"), "")
	srv.Stop(t)
	replayInto(t, in, rec)
	if st, _ := a.store.State(); st != cache.StateRedisDown {
		t.Fatalf("cache state after replaying with redis stopped: %s, want %s", st, cache.StateRedisDown)
	}
	srv.Restart(t)
	waitCacheState(t, a, cache.StateOK)
	stopAgent(t, a)
	checkSpans(t, readOutput(t, dataDir, point.Tracing), rec.Manifest)
	checkMetrics(t, readOutput(t, dataDir, point.Metric), rec.Manifest)
	want := manifestAgents(t, rec.Manifest)
	if got := storedAgents(t, cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "down:"}); !slices.Equal(got, want) {
		t.Fatalf("agent runs in Redis after the outage: %q, want the recording's %q", got, want)
	}
}

// waitCacheState polls until the agent's cache is in want, failing after 30 seconds.
func waitCacheState(t *testing.T, a *Agent, want cache.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, problem := a.store.State()
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache state %s (%s) after 30s, want %s", st, problem, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisStoppedMidReplay: Redis is killed in the middle of each recording (after spans
// whose metadata has not come yet) and comes back (with what it had persisted) after the
// rest, metadata included, arrived during the outage. Nothing is missing, nothing doubled,
// no placeholder, and nothing stays in memory.
func TestRedisStoppedMidReplay(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{Persist: true})
			dataDir := t.TempDir()
			first, second := splitForRestart(t, rec)
			a, in := startAgentMain(t, dataDir, redisMain(srv.URL(), "mid:"), "")
			replayInto(t, in, first)
			srv.Stop(t)
			replayInto(t, in, second)
			srv.Restart(t)
			waitCacheState(t, a, cache.StateOK)
			if st := a.Stats().Cache; st.Redis.FallbackChanges != 0 || st.Redis.Replayed == 0 || st.Redis.ReplayDropped != 0 {
				t.Fatalf("after catching up: %+v; want writes replayed, none dropped or left", *st.Redis)
			}
			stopAgent(t, a)
			checkSpans(t, readOutput(t, dataDir, point.Tracing), rec.Manifest)
			checkMetrics(t, readOutput(t, dataDir, point.Metric), rec.Manifest)
		})
	}
}
