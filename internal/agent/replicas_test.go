package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs/pinpoint"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/internal/redistest"
	"github.com/apmkit/apmkit/point"
)

// These tests run apmkit replicas in one process, each with its own ports and data dir,
// sharing their cache through a real redis-server: an agent's calls split across replicas
// must give exactly what one apmkit gives.

// replica is one apmkit of a scale-out set.
type replica struct {
	a       *Agent
	in      *pinpoint.Input
	dataDir string
}

// replicaConf has one alias for every replica (their shared state's name) and a
// metadata_wait far longer than the tests wait: a span held on one replica for metadata
// another received is released by the other's announcement, not by its wait running out.
const replicaConf = "  alias = \"pinpoint\"\n  metadata_wait = \"2m\"\n"

func startReplica(t testing.TB, redisURL, dataDir string) *replica {
	t.Helper()
	return startReplicaConf(t, redisURL, dataDir, replicaConf)
}

// startReplicaConf starts a replica with the pinpoint options given.
func startReplicaConf(t testing.TB, redisURL, dataDir, pinpointConf string) *replica {
	t.Helper()
	main := fmt.Sprintf("%s[cache]\nredis_url = %q\n", testMain, redisURL)
	a, in := startAgentMain(t, dataDir, main, pinpointConf)
	return &replica{a: a, in: in, dataDir: dataDir}
}

// outputs reads what every replica wrote for a category.
func outputs(t *testing.T, cat point.Category, rs ...*replica) []*point.Point {
	t.Helper()
	var pts []*point.Point
	for _, r := range rs {
		pts = append(pts, readOutput(t, r.dataDir, cat)...)
	}
	return pts
}

// waitReleased waits until no span waits for metadata on r, failing after a bound far
// below metadata_wait: only another replica's announcement can have released them.
func waitReleased(t *testing.T, r *replica) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for held := heldOn(r); held > 0; held = heldOn(r) {
		if time.Now().After(deadline) {
			t.Fatalf("%d spans still wait for metadata another replica received", held)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func replayTargets(t *testing.T, rec *replay.Recording, targets replay.Targets) {
	t.Helper()
	if err := replayAt(rec, targets); err != nil {
		t.Fatal(err)
	}
}

// noPartial fails on spans written as partial (a chunk that never met its span).
func noPartial(t *testing.T, spans []*point.Point) {
	t.Helper()
	for _, p := range spans {
		if tag(p, "partial") == "true" {
			t.Fatalf("partial span %s of trace %s: a chunk did not meet its span", str(p, "span_id"), str(p, "trace_id"))
		}
	}
}

// TestReplicasShareOneAgent sends each recording's agent and metadata calls to replica A,
// its spans to B and its stats to C: together they write exactly the recording's facts,
// every name resolved.
func TestReplicasShareOneAgent(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			srv.Client(t).FlushAll(context.Background())
			a, b, c := startReplica(t, srv.URL(), t.TempDir()), startReplica(t, srv.URL(), t.TempDir()), startReplica(t, srv.URL(), t.TempDir())
			replayTargets(t, rec, replay.Targets{Agent: a.in.Addrs()[0], Span: b.in.Addrs()[0], Stat: c.in.Addrs()[0]})
			waitReleased(t, b)
			for _, r := range []*replica{a, b, c} {
				stopAgent(t, r.a)
			}
			spans := outputs(t, point.Tracing, a, b, c)
			checkSpans(t, spans, rec.Manifest)
			noPartial(t, spans)
			checkMetrics(t, outputs(t, point.Metric, a, b, c), rec.Manifest)
		})
	}
}

// TestMetadataOnAnotherReplicaWakesSpans: replica B receives a recording's first spans,
// which wait for metadata nobody has yet, and stops: they wait in Redis. Replicas C and D
// start at once and both restore them. Then replica A receives the agent and metadata
// calls: its announcements through Redis release the spans on C and D long before
// metadata_wait, and each goes out once (claimed), not twice.
func TestMetadataOnAnotherReplicaWakesSpans(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := recording(t, "go-agent-batch-200")
	agentCalls, rest := splitByMethod(rec, isAgentCall)
	spans, stats := splitByMethod(rest, func(m string) bool { return strings.HasPrefix(m, "/v1.Span/") })
	firstSpans, laterSpans := splitAtMessage(spans, 2)

	b := startReplica(t, srv.URL(), t.TempDir())
	replayInto(t, b.in, firstSpans)
	held := heldOn(b)
	if held == 0 {
		t.Fatal("no span waits for metadata on B: the test would prove nothing")
	}
	stopAgent(t, b.a)
	c, d := startReplica(t, srv.URL(), t.TempDir()), startReplica(t, srv.URL(), t.TempDir())
	if heldOn(c) != held || heldOn(d) != held {
		t.Fatalf("C and D hold %d and %d spans, want both B's %d", heldOn(c), heldOn(d), held)
	}
	a := startReplica(t, srv.URL(), t.TempDir())
	replayInto(t, a.in, agentCalls)
	waitReleased(t, c)
	waitReleased(t, d)
	replayInto(t, c.in, laterSpans)
	replayInto(t, d.in, stats)
	for _, r := range []*replica{a, c, d} {
		stopAgent(t, r.a)
	}
	checkSpans(t, outputs(t, point.Tracing, a, b, c, d), rec.Manifest)
	checkMetrics(t, outputs(t, point.Metric, a, b, c, d), rec.Manifest)
}

// TestReplicasFollowOneDecision sends the frontend agent's calls to replica A and the
// backend's to B, with close_resource dropping traces whose root is frontend /slow: only A
// sees those roots, B sees their callee spans alone. Each replica decides its spans after
// decision_wait and the first decision of a trace is the one both follow, so every trace
// is in the output whole or not at all.
func TestReplicasFollowOneDecision(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := recording(t, "go-agent-batch-200")
	all := byTrace(oneApmkit(t, rec))
	front, back := splitByAgent(rec, "frontend-01")
	conf := replicaConf + "  decision_wait = \"1s\"\n  [inputs.pinpoint.close_resource]\n    \"frontend\" = [\"^/slow$\"]\n"
	a, b := startReplicaConf(t, srv.URL(), t.TempDir(), conf), startReplicaConf(t, srv.URL(), t.TempDir(), conf)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []struct {
		r   *replica
		rec *replay.Recording
	}{{a, front}, {b, back}} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = replayTo(p.r.in, p.rec) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	stopAgent(t, a.a)
	stopAgent(t, b.a)
	kept := byTrace(outputs(t, point.Tracing, a, b))
	slow := 0
	for id, pts := range all {
		switch got := len(kept[id]); {
		case got == 0 && rootOf(pts) == "frontend /slow":
			slow++
		case got != len(pts):
			t.Errorf("trace %s (%s): %d of its %d spans kept", id, rootOf(pts), got, len(pts))
		}
	}
	if len(kept)+slow != len(all) {
		t.Errorf("%d traces kept and %d /slow dropped, of %d", len(kept), slow, len(all))
	}
}

// oneApmkit is the tracing output of the whole recording through one apmkit.
func oneApmkit(t *testing.T, rec *replay.Recording) []*point.Point {
	t.Helper()
	dir := t.TempDir()
	a, in := startAgent(t, dir, "")
	replayInto(t, in, rec)
	stopAgent(t, a)
	return readOutput(t, dir, point.Tracing)
}

// rootOf is "service resource" of a trace's root span.
func rootOf(pts []*point.Point) string {
	for _, p := range pts {
		if tag(p, "span_type") == "entry" && str(p, "parent_id") == "0" {
			return tag(p, "service") + " " + str(p, "resource")
		}
	}
	return ""
}

// splitByAgent splits a recording's streams by the agent that opened them.
func splitByAgent(rec *replay.Recording, agentID string) (mine, others *replay.Recording) {
	owner := map[string]string{}
	for _, ev := range rec.Events {
		if ev.Event == "open" {
			owner[ev.Stream] = ev.Headers["agentid"]
		}
	}
	return splitEvents(rec, func(ev replay.Event) bool { return owner[ev.Stream] == agentID })
}

func isAgentCall(method string) bool {
	return !strings.HasPrefix(method, "/v1.Span/") && !strings.HasPrefix(method, "/v1.Stat/")
}

// heldOn is how many spans wait for metadata on r now.
func heldOn(r *replica) int64 {
	st, _ := r.in.Stats().(pinpoint.Stats)
	if st.Trace == nil {
		return 0
	}
	return st.Trace.Held
}

// splitAtMessage cuts a recording of span calls after its n-th message: streams still open
// there are closed in the first part and opened again in the second, as an agent that
// reconnects does.
func splitAtMessage(rec *replay.Recording, n int) (first, second *replay.Recording) {
	first, second = copyHeader(rec), copyHeader(rec)
	open := map[string]replay.Event{}
	msgs := 0
	for _, ev := range rec.Events {
		if msgs >= n {
			if o, ok := open[ev.Stream]; ok && ev.Event != "open" {
				second.Events = append(second.Events, o)
				delete(open, ev.Stream)
			}
			second.Events = append(second.Events, ev)
			continue
		}
		first.Events = append(first.Events, ev)
		switch ev.Event {
		case "open":
			open[ev.Stream] = ev
		case "close":
			delete(open, ev.Stream)
		case "msg":
			msgs++
		}
	}
	for s, o := range open {
		first.Events = append(first.Events, replay.Event{Stream: s, Method: o.Method, Kind: o.Kind, Event: "close"})
	}
	return first, second
}

// TestFreshReplicaResolvesFromRedis: replica A receives the agent's info and metadata and
// stops; a replica started afterwards on an empty data dir receives the spans and stats
// and names them from what Redis holds.
func TestFreshReplicaResolvesFromRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := recording(t, "go-agent-batch-200")
	agentCalls, rest := splitByMethod(rec, isAgentCall)
	a := startReplica(t, srv.URL(), t.TempDir())
	replayInto(t, a.in, agentCalls)
	stopAgent(t, a.a)

	fresh := startReplica(t, srv.URL(), t.TempDir())
	replayInto(t, fresh.in, rest)
	stopAgent(t, fresh.a)
	spans := outputs(t, point.Tracing, fresh)
	checkSpans(t, spans, rec.Manifest)
	checkMetrics(t, outputs(t, point.Metric, fresh), rec.Manifest)
}

// TestChunkAndSpanOnTwoReplicas sends every span chunk to replica A and everything else to
// B, chunks first (they wait in Redis for spans B receives) and chunks last (they find the
// skeletons of spans B emitted): each chunk is merged with its span exactly once.
func TestChunkAndSpanOnTwoReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := recording(t, "go-agent-async-heavy")
	chunks, rest := splitChunks(t, rec)
	for _, chunksFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("chunks first %v", chunksFirst), func(t *testing.T) {
			srv.Client(t).FlushAll(context.Background())
			a, b := startReplica(t, srv.URL(), t.TempDir()), startReplica(t, srv.URL(), t.TempDir())
			if chunksFirst {
				replayInto(t, a.in, chunks)
				replayInto(t, b.in, rest)
			} else {
				replayInto(t, b.in, rest)
				replayInto(t, a.in, chunks)
			}
			waitReleased(t, a)
			waitReleased(t, b)
			stopAgent(t, b.a)
			stopAgent(t, a.a)
			spans := outputs(t, point.Tracing, a, b)
			checkSpans(t, spans, rec.Manifest)
			noPartial(t, spans)
		})
	}
}

// TestRedisRestartMidReplay restarts Redis (with its data on disk) between the two halves
// of a recording split across two replicas: nothing is lost or doubled.
func TestRedisRestartMidReplay(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Persist: true})
	rec := recording(t, "go-agent-batch-200")
	first, second := splitForRestart(t, rec)
	a, b := startReplica(t, srv.URL(), t.TempDir()), startReplica(t, srv.URL(), t.TempDir())
	replayTargets(t, first, replay.Targets{Agent: a.in.Addrs()[0], Span: b.in.Addrs()[0], Stat: b.in.Addrs()[0]})
	srv.Stop(t)
	srv.Restart(t)
	replayTargets(t, second, replay.Targets{Agent: a.in.Addrs()[0], Span: b.in.Addrs()[0], Stat: b.in.Addrs()[0]})
	waitReleased(t, b)
	stopAgent(t, a.a)
	stopAgent(t, b.a)
	spans := outputs(t, point.Tracing, a, b)
	checkSpans(t, spans, rec.Manifest)
	checkMetrics(t, outputs(t, point.Metric, a, b), rec.Manifest)
}

// splitByMethod splits a recording's streams by their method.
func splitByMethod(rec *replay.Recording, first func(method string) bool) (a, b *replay.Recording) {
	return splitEvents(rec, func(ev replay.Event) bool { return first(ev.Method) })
}

// splitEvents splits a recording's events in two, keeping their order.
func splitEvents(rec *replay.Recording, first func(replay.Event) bool) (a, b *replay.Recording) {
	a, b = copyHeader(rec), copyHeader(rec)
	for _, ev := range rec.Events {
		if first(ev) {
			a.Events = append(a.Events, ev)
		} else {
			b.Events = append(b.Events, ev)
		}
	}
	return a, b
}

// splitChunks moves every PSpanChunk of the recording's span messages into a recording of
// its own; the rest keeps everything else. A span call goes to each side that has a
// message of it (a unary call cannot be sent without one).
func splitChunks(t *testing.T, rec *replay.Recording) (chunks, rest *replay.Recording) {
	t.Helper()
	chunks, rest = copyHeader(rec), copyHeader(rec)
	type split struct{ chunks, rest *replay.Event }
	parts := map[int]split{} // event index -> its halves
	inChunks, inRest := map[string]bool{}, map[string]bool{}
	for i, ev := range rec.Events {
		if strings.HasPrefix(ev.Method, "/v1.Span/") && ev.Event == "msg" {
			c, r := splitSpanMessage(t, ev)
			parts[i] = split{c, r}
			inChunks[ev.Stream] = inChunks[ev.Stream] || c != nil
			inRest[ev.Stream] = inRest[ev.Stream] || r != nil
		}
	}
	for i, ev := range rec.Events {
		switch {
		case !strings.HasPrefix(ev.Method, "/v1.Span/"):
			rest.Events = append(rest.Events, ev)
		case ev.Event == "msg":
			if p := parts[i]; p.chunks != nil {
				chunks.Events = append(chunks.Events, *p.chunks)
			}
			if p := parts[i]; p.rest != nil {
				rest.Events = append(rest.Events, *p.rest)
			}
		default: // open, close
			if inChunks[ev.Stream] {
				chunks.Events = append(chunks.Events, ev)
			}
			if inRest[ev.Stream] {
				rest.Events = append(rest.Events, ev)
			}
		}
	}
	return chunks, rest
}

// splitSpanMessage splits one span call's message (a PSpanMessageBatch for SendSpanBatch,
// a PSpanMessage for the SendSpan stream) into its chunks and its spans.
func splitSpanMessage(t *testing.T, ev replay.Event) (chunks, spans *replay.Event) {
	t.Helper()
	raw, err := ev.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*pb.PSpanMessage
	batch := strings.HasSuffix(ev.Method, "Batch")
	if batch {
		var b pb.PSpanMessageBatch
		if err := proto.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		msgs = b.GetSpan()
	} else {
		var m pb.PSpanMessage
		if err := proto.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		msgs = []*pb.PSpanMessage{&m}
	}
	var c, s []*pb.PSpanMessage
	for _, m := range msgs {
		if m.GetSpanChunk() != nil {
			c = append(c, m)
		} else {
			s = append(s, m)
		}
	}
	return encodeSpanEvent(t, ev, c, batch), encodeSpanEvent(t, ev, s, batch)
}

// encodeSpanEvent is ev carrying msgs: one batch, or the one stream message; nil when
// there is nothing to send (a stream message of the other kind, an empty batch).
func encodeSpanEvent(t *testing.T, ev replay.Event, msgs []*pb.PSpanMessage, batch bool) *replay.Event {
	t.Helper()
	if len(msgs) == 0 {
		return nil
	}
	var m proto.Message = msgs[0]
	if batch {
		m = &pb.PSpanMessageBatch{Span: msgs}
	}
	raw, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ev.Msg = base64.StdEncoding.EncodeToString(raw)
	return &ev
}

// TestStoragePathRefusedWithRedis: an instance with its own badger (storage.path) would
// keep its state out of the cache the replicas share: apmkit refuses to start so.
func TestStoragePathRefusedWithRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	confDir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(confDir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("apmkit.conf", fmt.Sprintf("%s[cache]\nredis_url = %q\n", testMain, srv.URL()))
	write("pinpoint.conf", "[[inputs.pinpoint]]\n  address = \"127.0.0.1:0\"\n  [inputs.pinpoint.storage]\n    path = \"pp\"\n")
	cfg, err := config.Load(config.Options{ConfDir: confDir, DataDir: t.TempDir(), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(context.Background())
	if err == nil {
		stopAgent(t, a)
		t.Fatal("apmkit started with storage.path and redis_url")
	}
	if !strings.Contains(err.Error(), "storage.path") || !strings.Contains(err.Error(), "redis_url") {
		t.Fatalf("error %q does not name storage.path and redis_url", err)
	}
}
