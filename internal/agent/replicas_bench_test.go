package agent

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/internal/redistest"
)

// BenchmarkReplicas replays a real Go agent's recording (400 spans, 50 chunks, its
// metadata and stats) b.N times through one apmkit on badger, one on Redis, and two
// replicas on Redis with the agent calls on one and the spans and stats on the other. It
// reports the time per span (replay client included, everything on the same cores) and,
// on Redis, the Redis commands per span (INFO commandstats): what a replica costs Redis.
//
//	go test -run '^$' -bench Replicas ./internal/agent/
func BenchmarkReplicas(b *testing.B) {
	rec := recording(b, "go-agent-batch-200")
	spans := rec.Manifest.Int("messages.PSpan")
	b.Run("badger", func(b *testing.B) {
		_, in := startAgentMain(b, b.TempDir(), testMain, replicaConf)
		addr := in.Addrs()[0]
		runReplays(b, rec, replay.Targets{Agent: addr, Span: addr, Stat: addr}, spans, nil)
	})
	for _, n := range []int{1, 2} {
		b.Run("redis-"+strconv.Itoa(n), func(b *testing.B) {
			srv := redistest.Start(b, redistest.Options{})
			a := startReplica(b, srv.URL(), b.TempDir())
			other := a
			if n == 2 {
				other = startReplica(b, srv.URL(), b.TempDir())
			}
			targets := replay.Targets{Agent: a.in.Addrs()[0], Span: other.in.Addrs()[0], Stat: other.in.Addrs()[0]}
			runReplays(b, rec, targets, spans, srv)
		})
	}
}

func runReplays(b *testing.B, rec *replay.Recording, targets replay.Targets, spans int64, srv *redistest.Server) {
	var before, scriptsBefore int64
	if srv != nil {
		before, scriptsBefore = redisCalls(b, srv)
	}
	b.ResetTimer()
	for range b.N {
		if err := replayAt(rec, targets); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	total := float64(spans) * float64(b.N)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/span")
	if srv != nil {
		calls, scripts := redisCalls(b, srv)
		b.ReportMetric(float64(calls-before)/total, "redis-cmds/span")
		b.ReportMetric(float64(scripts-scriptsBefore)/total, "redis-scripts/span")
	}
}

// redisCalls is the number of commands Redis ran, from INFO commandstats (a script counts
// as its EVALSHA plus the commands it runs), and of scripts among them.
func redisCalls(b *testing.B, srv *redistest.Server) (calls, scripts int64) {
	info, err := srv.Client(b).Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		_, rest, ok := strings.Cut(line, "calls=")
		if !ok || strings.HasPrefix(line, "cmdstat_info") {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		c, _ := strconv.ParseInt(v, 10, 64)
		calls += c
		if strings.HasPrefix(line, "cmdstat_eval") {
			scripts += c
		}
	}
	return calls, scripts
}
