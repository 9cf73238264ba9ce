package cache_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/cache/storetest"
	"github.com/apmkit/apmkit/internal/redistest"
)

// openRedis opens the Redis backend on cfg (RedisURL set by the caller), closed when the test
// ends unless the test closed it.
func openRedis(t testing.TB, cfg cache.Config, opts ...cache.RedisOption) *cache.Redis {
	t.Helper()
	r, err := cache.OpenRedis(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// redisHarness runs every conformance instance on one server, each under a key prefix of
// its own, which also checks that prefixes keep deployments apart. The timeout is long: a
// loaded machine may take a while over the suite's 16 MiB values, and a timeout is not
// what the suite tests.
func redisHarness(url string) storetest.Harness {
	n := 0
	return storetest.Harness{
		FreesOnDelete: true, // the accounting drops a deleted key's bytes at once
		Open: func(t *testing.T, cfg cache.Config) storetest.Instance {
			n++
			cfg.RedisURL, cfg.RedisKeyPrefix, cfg.RedisTimeout = url, fmt.Sprintf("conformance-%d:", n), 10*time.Second
			return storetest.Instance{Backend: openRedis(t, cfg)}
		},
	}
}

func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "conformance-secret"})
	storetest.Run(t, redisHarness(srv.URL()))
}

// TestRedisTLSConformance: rediss:// talks TLS.
func TestRedisTLSConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: true})
	storetest.Run(t, redisHarness(srv.URL()))
}

// TestRedisClusterConformance: a cluster refuses scripts whose keys span hash slots, so
// this fails unless every key of a prefix shares one slot (the braces of redisKeys).
func TestRedisClusterConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Cluster: true})
	storetest.Run(t, redisHarness("redis+cluster://"+srv.Addr))
}

// TestRedisSentinelConformance: the backend finds the master through a Sentinel.
func TestRedisSentinelConformance(t *testing.T) {
	master := redistest.Start(t, redistest.Options{Password: "master-secret"})
	sentinel := redistest.StartSentinel(t, master, "apmkit-main")
	storetest.Run(t, redisHarness("redis+sentinel://"+sentinel.Addr+"?master_name=apmkit-main&password=master-secret"))
}

// redisKey is where the backend keeps key of namespace ns under prefix (see redisKeys), for
// checks on Redis itself.
func redisKey(prefix, ns, key string) string {
	return "{" + prefix + "}k" + string(binary.AppendUvarint(nil, uint64(len(ns)))) + ns + key
}

// wantErrors fails unless the backend counted exactly these Redis call failures.
func wantErrors(t *testing.T, r *cache.Redis, get, set, del, scan int64) {
	t.Helper()
	e := r.Stats().Redis.Errors
	if e["get"] != get || e["set"] != set || e["delete"] != del || e["scan"] != scan {
		t.Fatalf("redis errors %v, want get %d, set %d, delete %d, scan %d", e, get, set, del, scan)
	}
}

// TestRedisOutage stops Redis while apmkit writes: the writes are kept in memory up to the
// bound (what does not fit is refused, counted), reads of them are served, reads that need
// Redis fail at once, and once Redis is back every kept write (sets with their TTLs, and
// deletes) is in Redis, as another replica sees it.
func TestRedisOutage(t *testing.T) {
	const password = "outage-password"
	srv := redistest.Start(t, redistest.Options{Persist: true, Password: password})
	logs := &lockedWriter{}
	cfg := cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "outage:", RedisTimeout: 5 * time.Second, RedisFallbackMB: 1}
	r, err := cache.OpenRedis(cfg, slog.New(slog.NewTextHandler(logs, nil)), cache.WithRedisProbe(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ns := r.Namespace("pinpoint")
	for i := range 10 {
		mustSet(t, ns, fmt.Sprintf("before/%d", i), "old", 0)
	}

	srv.Stop(t)
	mustSet(t, ns, "during/00", "kept", 0) // finds Redis down: one failed call, then kept
	if st, _ := r.State(); st != cache.StateRedisDown {
		t.Fatalf("state after a write to a stopped redis: %s, want %s", st, cache.StateRedisDown)
	}
	want := outageWrites(t, ns)
	wantErrors(t, r, 0, 1, 0, 0) // everything after the first failure stayed off Redis

	srv.Restart(t)
	waitState(t, r, cache.StateOK)
	wantErrors(t, r, 0, 1, 0, 0)
	st := r.Stats()
	if st.Redis.FallbackChanges != 0 || st.Redis.FallbackBytes != 0 || st.Redis.ReplayDropped != 0 ||
		st.Redis.Replayed != int64(len(want.kept)) || st.Refused[cache.ReasonRedisUnavailable] != 1 {
		t.Fatalf("after catching up: %+v, refused %v; want %d replayed, none dropped or left, one refused",
			*st.Redis, st.Refused, len(want.kept))
	}

	// Another replica sees exactly what apmkit was told was stored.
	other := openRedis(t, cfg)
	wantContent(t, other.Namespace("pinpoint"), want.final)
	pttl, err := srv.Client(t).PTTL(context.Background(), redisKey("outage:", "pinpoint", "during/ttl")).Result()
	if err != nil || pttl <= 0 || pttl > time.Hour {
		t.Fatalf("PTTL of a key set with a 1h TTL during the outage = %v, %v; want its TTL kept", pttl, err)
	}
	for _, s := range []string{logs.String(), fmt.Sprint(r.Stats())} {
		if strings.Contains(s, password) {
			t.Fatalf("the password shows: %s", s)
		}
	}
}

// outageResult is what TestRedisOutage's writes during the outage should leave.
type outageResult struct {
	kept  []string          // the keys of the writes kept for Redis
	final map[string]string // the namespace once Redis caught up
}

// outageWrites writes while Redis is down: sets (one with a TTL), deletes of keys Redis
// has, reads, a scan, and big values until the 1 MiB fallback refuses one.
func outageWrites(t *testing.T, ns cache.Store) outageResult {
	t.Helper()
	res := outageResult{kept: []string{"during/00"}, final: map[string]string{"during/00": "kept", "during/ttl": "an hour"}}
	for i := 1; i < 20; i++ {
		k := fmt.Sprintf("during/%02d", i)
		mustSet(t, ns, k, "kept", 0)
		res.kept, res.final[k] = append(res.kept, k), "kept"
	}
	mustSet(t, ns, "during/ttl", "an hour", time.Hour)
	res.kept = append(res.kept, "during/ttl")
	for i := range 10 {
		if k := fmt.Sprintf("before/%d", i); i < 5 {
			mustDelete(t, ns, k)
			res.kept = append(res.kept, k)
		} else {
			res.final[k] = "old"
		}
	}
	wantValue(t, ns, "during/03", "kept")
	wantAbsent(t, ns, "before/2") // deleted here: no need to ask Redis
	if _, err := ns.Get([]byte("before/7")); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Get of a key only Redis has, while it is down: %v, want ErrUnavailable", err)
	}
	var seen []string
	err := ns.Scan([]byte("during/"), func(k, _ []byte) error { seen = append(seen, string(k)); return nil })
	if !errors.Is(err, cache.ErrUnavailable) || fmt.Sprint(seen) != fmt.Sprint(res.kept[:21]) {
		t.Fatalf("Scan while down: visited %q, %v; want the kept keys %q and ErrUnavailable", seen, err, res.kept[:21])
	}
	big := strings.Repeat("x", 100<<10)
	for i := 0; ; i++ {
		k := fmt.Sprintf("during/big%02d", i)
		if err := ns.Set([]byte(k), []byte(big), 0); err != nil {
			if !errors.Is(err, cache.ErrFull) || !errors.Is(err, cache.ErrUnavailable) || i == 0 {
				t.Fatalf("Set #%d of 100 KiB into a 1 MiB fallback: %v; want some kept, then ErrFull and ErrUnavailable", i, err)
			}
			return res
		}
		res.kept, res.final[k] = append(res.kept, k), big
	}
}

// wantContent fails unless a Scan of s visits exactly want, in ascending key order.
func wantContent(t *testing.T, s cache.Store, want map[string]string) {
	t.Helper()
	var got []string
	err := s.Scan(nil, func(k, v []byte) error {
		if w, ok := want[string(k)]; !ok || w != string(v) {
			t.Errorf("Scan visited %q = %.20q, want %.20q (present: %v)", k, v, w, ok)
		}
		got = append(got, string(k))
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	keys := slices.Sorted(maps.Keys(want))
	if !slices.Equal(got, keys) {
		t.Fatalf("Scan visited %q, want %q", got, keys)
	}
}

func mustDelete(t testing.TB, s cache.Store, key string) {
	t.Helper()
	if err := s.Delete([]byte(key)); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
}

// lockedWriter collects a log that goroutines write while the test reads it.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRedisSlow: a Redis that answers nothing (frozen: its connections stay open) makes one
// call fail after redis_timeout; the calls after it are kept in memory without waiting for
// Redis, and reach it once it answers again.
func TestRedisSlow(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "slow:", RedisTimeout: 200 * time.Millisecond, RedisFallbackMB: 1}
	r := openRedis(t, cfg, cache.WithRedisProbe(50*time.Millisecond))
	ns := r.Namespace("pinpoint")
	mustSet(t, ns, "before", "v", 0)
	running := goleak.IgnoreCurrent()
	srv.Freeze(t)
	want := map[string]string{"before": "v"}
	for i := range 10 {
		k := fmt.Sprintf("frozen/%d", i)
		mustSet(t, ns, k, "kept", 0)
		want[k] = "kept"
	}
	// Many callers at once while Redis hangs: each returns at once, and nothing is left
	// running on their behalf (no goroutine per call waiting for Redis).
	var wg sync.WaitGroup
	for i := range 32 {
		k := fmt.Sprintf("burst/%02d", i)
		want[k] = "kept"
		wg.Go(func() {
			if err := ns.Set([]byte(k), []byte("kept"), 0); err != nil {
				t.Errorf("Set(%q) while redis hangs: %v", k, err)
			}
		})
	}
	wg.Wait()
	if err := goleak.Find(running); err != nil {
		t.Fatalf("goroutines left while redis hangs: %v", err)
	}
	if st, problem := r.State(); st != cache.StateRedisDown || !strings.Contains(problem, "timeout") {
		t.Fatalf("state while frozen: %s (%s), want %s after a timeout", st, problem, cache.StateRedisDown)
	}
	wantErrors(t, r, 0, 1, 0, 0) // one call waited for Redis; the other nine did not
	srv.Thaw(t)
	waitState(t, r, cache.StateOK)
	wantContent(t, openRedis(t, cfg).Namespace("pinpoint"), want)
	wantErrors(t, r, 0, 1, 0, 0)
}

// TestRedisNoFallback: with redis_fallback_mb = 0 writes fail while Redis is down, counted,
// and work again once it is back.
func TestRedisNoFallback(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := openRedis(t, cache.Config{RedisURL: srv.URL(), RedisTimeout: 5 * time.Second}, cache.WithRedisProbe(50*time.Millisecond))
	srv.Stop(t)
	for range 2 {
		if err := r.Set([]byte("k"), []byte("v"), 0); !errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("Set while down without a fallback: %v, want ErrUnavailable", err)
		}
	}
	if st := r.Stats(); st.Refused[cache.ReasonRedisUnavailable] != 2 || st.Redis.Errors["set"] != 1 {
		t.Fatalf("refused %v, errors %v; want 2 refused, 1 failed call", st.Refused, st.Redis.Errors)
	}
	srv.Restart(t)
	waitState(t, r, cache.StateOK)
	mustSet(t, r, "k", "v", 0)
	wantValue(t, r, "k", "v")
}

// TestRedisURLs: the URL forms apmkit takes, and errors that never show the password.
func TestRedisURLs(t *testing.T) {
	good := []string{
		"redis://127.0.0.1:6379",
		"redis://:pw@redis.example:6379/2",
		"rediss://user:pw@redis.example:6380?skip_verify=true",
		"redis+sentinel://s1:26379?master_name=main&addr=s2:26379&password=pw",
		"rediss+sentinel://user:pw@s1:26379/1?master_name=main",
		"redis+cluster://:pw@n1:6379?addr=n2:6379&addr=n3:6379",
		"rediss+cluster://n1:6379",
	}
	withURL := func(u string) cache.Config {
		cfg := cache.DefaultConfig()
		cfg.RedisURL = u
		return cfg
	}
	for _, u := range good {
		if err := withURL(u).Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	bad := map[string]string{
		"http://:hunter2@host:6379":                 `scheme "http" is not one of`,
		"redis+sentinel://:hunter2@s1:26379":        "needs ?master_name=",
		"redis+ring://:hunter2@h:6379":              `scheme "redis+ring" is not one of`,
		"redis://:hunter2@h:6379/x":                 "invalid database number",
		"redis://:hunter2@h:6379?nonsense=1":        "unexpected option",
		"redis://:hunter2@h:6379/%zz":               "is not a URL",
		"redis+cluster://:hunter2@h:6379?addr=nope": "addr",
	}
	for u, want := range bad {
		err := withURL(u).Validate()
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cache.redis_url") {
			t.Errorf("%s: %v; want an error about cache.redis_url saying %q", u, err, want)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", u, err)
		}
	}
}

// TestRedisConfigValidate: the other Redis options are checked too.
func TestRedisConfigValidate(t *testing.T) {
	cfg := cache.DefaultConfig()
	cfg.RedisKeyPrefix, cfg.RedisTimeout, cfg.RedisFallbackMB = "{apmkit}", 0, -1
	err := cfg.Validate()
	for _, want := range []string{"cache.redis_key_prefix", "cache.redis_timeout", "cache.redis_fallback_mb"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want an error about %s", err, want)
		}
	}
	if err := cache.DefaultConfig().Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

// TestRedisOpenFails: apmkit does not start on a Redis it cannot use, and says why without
// the password.
func TestRedisOpenFails(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "right-password"})
	for name, url := range map[string]string{
		"wrong password": "redis://:wrong-password@" + srv.Addr,
		"nothing there":  "redis://:wrong-password@" + redistest.FreeAddr(t),
	} {
		r, err := cache.OpenRedis(cache.Config{RedisURL: url}, nil)
		if err == nil {
			r.Close()
			t.Fatalf("%s: opened", name)
		}
		if !strings.Contains(err.Error(), "cannot be used") || strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("%s: %v; want a clear error without the password", name, err)
		}
	}
}

// TestRedisSweep: keys that expire leave the index and the accounting, so neither grows
// with keys nobody deletes.
func TestRedisSweep(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := openRedis(t, cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "sweep:"}, cache.WithRedisSweep(50*time.Millisecond))
	ns := r.Namespace("ns")
	mustSet(t, ns, "stays", "v", 0)
	for i := range 3 {
		mustSet(t, ns, fmt.Sprintf("expires/%d", i), "v", 100*time.Millisecond)
	}
	stays := int64(len("\x02ns" + "stays" + "v")) // the key with its namespace, and the value
	c := srv.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := c.ZCard(context.Background(), "{sweep:}i").Result()
		if err == nil && n == 1 && r.SizeBytes() == stays {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: index of %d keys, %d bytes, %v; want 1 key of %d bytes", n, r.SizeBytes(), err, stays)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantContent(t, ns, map[string]string{"stays": "v"})
}

// TestRedisReplicasShareCapacity: the cap is counted in Redis, so it holds across replicas.
func TestRedisReplicasShareCapacity(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "shared:", CapacityMB: 1}
	a, b := openRedis(t, cfg), openRedis(t, cfg)
	val := make([]byte, 300<<10)
	for i := range 3 {
		mustSet(t, a, fmt.Sprintf("a%d", i), string(val), 0)
	}
	if err := b.Set([]byte("b"), val, 0); !errors.Is(err, cache.ErrFull) {
		t.Fatalf("Set on replica b after a filled the cap: %v, want ErrFull", err)
	}
	if got, want := b.SizeBytes(), int64(3*(1+2+len(val))); got != want {
		t.Fatalf("replica b's SizeBytes = %d, want %d (a's three keys)", got, want)
	}
	mustDelete(t, b, "a0")
	mustSet(t, b, "b", string(val), 0)
	if st := b.Stats(); st.Refused[cache.ReasonCapacity] != 1 {
		t.Fatalf("refused %v, want one for capacity", st.Refused)
	}
}

// TestRedisMaxmemory: a Redis at its maxmemory (noeviction) refuses writes: ErrFull,
// counted as capacity, while the backend stays ok (Redis answers) and deletes still work.
func TestRedisMaxmemory(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c, ctx := srv.Client(t), context.Background()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	var usedMemory int64
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			_, _ = fmt.Sscan(v, &usedMemory)
		}
	}
	if usedMemory <= 0 {
		t.Fatalf("no used_memory in INFO memory:\n%s", info)
	}
	if err := c.ConfigSet(ctx, "maxmemory", fmt.Sprint(usedMemory+2<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	r := openRedis(t, cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "maxmemory:"})
	val := make([]byte, 64<<10)
	var i int
	for i = 0; i < 1000; i++ {
		if err = r.Set([]byte(fmt.Sprint(i)), val, 0); err != nil {
			break
		}
	}
	if !errors.Is(err, cache.ErrFull) || i == 0 {
		t.Fatalf("Set #%d into a Redis at maxmemory: %v, want ErrFull after some writes", i, err)
	}
	st := r.Stats()
	if st.State != cache.StateOK || st.Refused[cache.ReasonCapacity] != 1 || st.Redis.Errors["set"] != 1 {
		t.Fatalf("after a refused write: state %s, refused %v, errors %v; want ok, 1 capacity, 1 set", st.State, st.Refused, st.Redis.Errors)
	}
	mustDelete(t, r, "0")
}
