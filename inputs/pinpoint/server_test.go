package pinpoint

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/inputstest"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// startInput runs an input on three loopback ports of h.
func startInput(t *testing.T, h *inputstest.Host, mutate func(*Config)) *Input {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Address, cfg.StatAddress, cfg.SpanAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	in := New(cfg)
	if err := in.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopInput(t, in) })
	return in
}

func stopInput(t *testing.T, in *Input) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func targets(in *Input, rec *replay.Recording) replay.Targets {
	addrs := in.Addrs()
	if rec.Header.Ports == "three" {
		return replay.Targets{Agent: addrs[0], Stat: addrs[1], Span: addrs[2]}
	}
	return replay.Targets{Agent: addrs[0]}
}

func mustReplay(t *testing.T, in *Input, rec *replay.Recording) *replay.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := rec.Replay(ctx, targets(in, rec))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) > 0 {
		t.Fatalf("%d calls failed, first: %s", len(res.Failed), res.Failed[0])
	}
	return res
}

func recordings(t *testing.T) []*replay.Recording {
	t.Helper()
	recs, err := replay.All()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestReplayRecordings replays each recording as the agents sent it and checks that every
// call was answered OK and the counters equal the manifest, per type and per sender.
func TestReplayRecordings(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			h := inputstest.New(t, "")
			in := startInput(t, h, nil)
			res := mustReplay(t, in, rec)
			if want := int(rec.Manifest.Int("header.streams")); res.Calls != want {
				t.Errorf("calls %d, want %d", res.Calls, want)
			}
			for _, r := range res.Replies["/v1.Span/SendSpanBatch"] {
				if len(r) != 0 {
					t.Errorf("batch answered %x, want an empty PSpanResultBatch", r)
				}
			}
			for _, r := range res.Replies["/v1.Agent/RequestAgentInfo"] {
				if string(r) != "\x08\x01" {
					t.Errorf("agent info answered %x, want 08 01", r)
				}
			}
			checkCounters(t, in.counters.snapshot(), rec.Manifest)
			byName := map[string]int64{}
			for _, p := range h.Points(point.Metric) {
				byName[p.Name]++
			}
			want := map[string]int64{
				"pinpoint_jvm":   rec.Manifest.Int("messages.PAgentStat_entries_in_batches"),
				"pinpoint_uri":   rec.Manifest.Int("messages.PEachUriStat_entries"),
				"pinpoint_agent": rec.Manifest.Int("messages.top_level_by_type.PAgentInfo"),
			}
			if fmt.Sprint(byName) != fmt.Sprint(want) {
				t.Errorf("metric points %v, want %v", byName, want)
			}
		})
	}
}

func checkCounters(t *testing.T, st Stats, m replay.Manifest) {
	t.Helper()
	want := map[string]int64{}
	for k, v := range m.Ints("messages.top_level_by_type") {
		want[k] = v
	}
	want["PSpan"] = m.Int("messages.PSpan")
	want["PSpanChunk"] = m.Int("messages.PSpanChunk")
	want["PAgentStatBatch"] = m.Int("messages.PStatMessage_agentStatBatch")
	want["PAgentUriStat"] = m.Int("messages.PStatMessage_agentUriStat")
	for k, v := range want {
		if v == 0 {
			delete(want, k)
		}
	}
	if fmt.Sprint(st.Messages) != fmt.Sprint(want) {
		t.Errorf("messages\n got %v\nwant %v", st.Messages, want)
	}
	if len(st.Rejected) != 0 {
		t.Errorf("rejected %v", st.Rejected)
	}
	spansByAgent := m.Ints("traces.spans_by_agentid")
	chunksByApp := m.Ints("traces.chunks_by_application")
	agents, _ := m.Get("agents")
	if len(st.Agents) != len(agents.([]any)) {
		t.Fatalf("agents %d, want %d", len(st.Agents), len(agents.([]any)))
	}
	for _, a := range agents.([]any) {
		ma := a.(map[string]any)
		id := ma["agentid"].(string)
		got := findAgent(t, st, id)
		if fmt.Sprint(got.StartTime) != ma["starttime"] || got.ApplicationName != ma["applicationname"] {
			t.Errorf("agent %s: %+v", id, got)
		}
		if got.Messages["PSpan"] != spansByAgent[id] || got.Messages["PSpanChunk"] != chunksByApp[got.ApplicationName] {
			t.Errorf("agent %s spans %d chunks %d, want %d %d", id, got.Messages["PSpan"], got.Messages["PSpanChunk"], spansByAgent[id], chunksByApp[got.ApplicationName])
		}
		for kind, n := range ma["metadata"].(map[string]any) {
			if fmt.Sprint(got.Messages[kind]) != fmt.Sprint(n) {
				t.Errorf("agent %s %s = %d, want %v", id, kind, got.Messages[kind], n)
			}
		}
		if got.Messages["PAgentInfo"] != 1 || got.Messages["PAgentStatBatch"] != 1 || got.Messages["PAgentUriStat"] != 1 {
			t.Errorf("agent %s: %v", id, got.Messages)
		}
	}
}

func findAgent(t *testing.T, st Stats, id string) AgentStats {
	t.Helper()
	for _, a := range st.Agents {
		if a.AgentID == id {
			return a
		}
	}
	t.Fatalf("agent %s not in stats", id)
	return AgentStats{}
}

// TestAgentInfoAndMetadataSurviveRestart stops the input after a replay and starts a new
// one on the same data dir: agents never re-send metadata, so it must still be there.
func TestAgentInfoAndMetadataSurviveRestart(t *testing.T) {
	rec := recordings(t)[0]
	dir := t.TempDir()
	h1 := inputstest.New(t, dir)
	in1 := startInput(t, h1, func(c *Config) { c.TypeProviders = []string{"servicetype/testdata/good/type-provider.yml"} })
	custom := in1.Types().Custom()
	if len(custom) == 0 {
		t.Fatal("the type provider defined no custom type")
	}
	mustReplay(t, in1, rec)
	stopInput(t, in1)
	h1.Close()

	h2 := inputstest.New(t, dir)
	in2 := startInput(t, h2, nil) // the type provider is no longer configured
	for _, st := range custom {
		if got, ok := in2.Types().Lookup(st.Code); !ok || got.Name != st.Name {
			t.Errorf("custom service type %d %s lost after restart", st.Code, st.Name)
		}
	}
	agents, _ := rec.Manifest.Get("agents")
	for _, a := range agents.([]any) {
		ma := a.(map[string]any)
		var key meta.AgentKey
		key.AgentID = ma["agentid"].(string)
		fmt.Sscan(ma["starttime"].(string), &key.StartTime)
		info, ok := in2.Meta().Agent(key)
		if !ok || info.Info.GetHostname() != "vm" || info.ApplicationName != ma["applicationname"] {
			t.Fatalf("agent %s after restart: %v %+v", key, ok, info)
		}
		md := ma["metadata"].(map[string]any)
		apis := countResolvable(func(id int32) bool { _, ok := in2.Meta().API(key, id); return ok })
		if fmt.Sprint(apis) != fmt.Sprint(md["PApiMetaData"]) {
			t.Errorf("agent %s: %d api ids resolve after restart, want %v", key, apis, md["PApiMetaData"])
		}
		if n, ok := md["PSqlMetaData"]; ok {
			sqls := countResolvable(func(id int32) bool { _, ok := in2.Meta().SQL(key, id); return ok })
			if fmt.Sprint(sqls) != fmt.Sprint(n) {
				t.Errorf("agent %s: %d sql ids resolve, want %v", key, sqls, n)
			}
		}
	}
}

// countResolvable counts the ids 1..1000 that resolve (agents number metadata from 1).
func countResolvable(ok func(int32) bool) int {
	n := 0
	for id := int32(1); id <= 1000; id++ {
		if ok(id) {
			n++
		}
	}
	return n
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func agentCtx(agentID string, start int64) context.Context {
	return metadata.NewOutgoingContext(context.Background(), metadata.Pairs(
		"agentid", agentID, "applicationname", "app", "starttime", fmt.Sprint(start)))
}

func TestInvalidHeaders(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	c := pb.NewAgentClient(dial(t, in.Addrs()[0]))
	cases := map[string]struct {
		md   metadata.MD
		want string
	}{
		"no agentid":         {metadata.Pairs("applicationname", "app", "starttime", "1"), "header agentid is missing"},
		"agentid of 25":      {metadata.Pairs("agentid", strings.Repeat("a", 25), "applicationname", "app", "starttime", "1"), "at most 24"},
		"bad charset":        {metadata.Pairs("agentid", "a b", "applicationname", "app", "starttime", "1"), "only [a-zA-Z0-9._-]"},
		"no applicationname": {metadata.Pairs("agentid", "a", "starttime", "1"), "header applicationname is missing"},
		"bad starttime":      {metadata.Pairs("agentid", "a", "applicationname", "app", "starttime", "x"), "header starttime"},
		"agentname too long": {metadata.Pairs("agentid", "a", "applicationname", "app", "starttime", "1", "agentname", strings.Repeat("n", 256)), "header agentname"},
	}
	for name, c2 := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(context.Background(), c2.md)
			_, err := c.RequestAgentInfo(ctx, &pb.PAgentInfo{})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c2.want) {
				t.Fatalf("got %v, want INVALID_ARGUMENT with %q", err, c2.want)
			}
			stream, err := pb.NewSpanClient(dial(t, in.Addrs()[0])).SendSpan(ctx)
			if err == nil {
				_, err = stream.CloseAndRecv()
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("stream: got %v, want INVALID_ARGUMENT", err)
			}
		})
	}
	// A long agentName is a label, accepted.
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("agentid", "a", "applicationname", "app", "starttime", "1", "agentname", strings.Repeat("n", 255)))
	if _, err := c.RequestAgentInfo(ctx, &pb.PAgentInfo{}); err != nil {
		t.Fatal(err)
	}
}

func validSpan(seq int64) *pb.PSpanMessage {
	return &pb.PSpanMessage{Field: &pb.PSpanMessage_Span{Span: &pb.PSpan{
		Version: 1, SpanId: seq, ParentSpanId: -1, StartTime: 1795417119963, Elapsed: 5,
		TransactionId: &pb.PTransactionId{AgentId: "a1", AgentStartTime: 1, Sequence: seq},
	}}}
}

// TestBadMessageInStreamIsSkipped sends random bytes between valid spans: the garbage is
// counted, the stream goes on and the valid spans after it are taken.
func TestBadMessageInStreamIsSkipped(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	conn := dial(t, in.Addrs()[0])
	stream, err := conn.NewStream(agentCtx("a1", 1), &grpc.StreamDesc{ClientStreams: true}, "/v1.Span/SendSpan", grpc.ForceCodec(replay.RawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	garbage := replay.Raw{0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99}
	for i, m := range []any{validSpan(1), &garbage, validSpan(2), &garbage, validSpan(3)} {
		raw, ok := m.(*replay.Raw)
		if !ok {
			b, _ := proto.Marshal(m.(proto.Message))
			r := replay.Raw(b)
			raw = &r
		}
		if err := stream.SendMsg(raw); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var reply replay.Raw
	if err := stream.RecvMsg(&reply); err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	st := in.counters.snapshot()
	if st.Messages["PSpan"] != 3 || st.Rejected[reasonDecode] != 2 {
		t.Fatalf("messages %v rejected %v", st.Messages, st.Rejected)
	}
}

// TestBatchPartialSuccess sends a batch with an undecodable and an invalid span among good
// ones: only those are rejected, and the answer says so.
func TestBatchPartialSuccess(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	good1, _ := proto.Marshal(validSpan(1))
	good2, _ := proto.Marshal(validSpan(2))
	bad := &pb.PSpanMessage{Field: &pb.PSpanMessage_Span{Span: &pb.PSpan{Version: 9}}}
	invalid, _ := proto.Marshal(bad)
	var batch []byte
	for _, m := range [][]byte{good1, {0xff, 0xff, 0xff}, invalid, good2} {
		batch = append(batch, 0x0a)
		batch = append(batch, byte(len(m)))
		batch = append(batch, m...)
	}
	var reply pb.PSpanResultBatch
	raw := replay.Raw(batch)
	var out replay.Raw
	if err := dial(t, in.Addrs()[0]).Invoke(agentCtx("a1", 1), "/v1.Span/SendSpanBatch", &raw, &out, grpc.ForceCodec(replay.RawCodec{})); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(out, &reply); err != nil {
		t.Fatal(err)
	}
	ps := reply.GetPartialSuccess()
	if ps.GetRejectedSpans() != 2 || ps.GetErrorId() != errIDDecode || !strings.Contains(ps.GetErrorMessage(), "span message 2") {
		t.Fatalf("reply %v", &reply)
	}
	if st := in.counters.snapshot(); st.Messages["PSpan"] != 3 {
		t.Fatalf("messages %v", st.Messages)
	}
	for reason, n := range map[string]float64{malformedNotProtobuf: 1, malformedVersion: 1} {
		if got := testutil.ToFloat64(in.counters.malformed.WithLabelValues("SendSpanBatch", reason)); got != n {
			t.Errorf("malformed{SendSpanBatch,%s} = %v, want %v", reason, got, n)
		}
	}
}

func TestOversizedMessage(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), func(c *Config) { c.MaxRecvMsgSize = 64 << 10 })
	conn := dial(t, in.Addrs()[0])
	big := validSpan(1)
	big.GetSpan().AcceptEvent = &pb.PAcceptEvent{Rpc: strings.Repeat("x", 100<<10)}
	_, err := pb.NewSpanClient(conn).SendSpanBatch(agentCtx("a1", 1), &pb.PSpanMessageBatch{Span: []*pb.PSpanMessage{big}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := pb.NewSpanClient(conn).SendSpanBatch(agentCtx("a1", 1), &pb.PSpanMessageBatch{Span: []*pb.PSpanMessage{validSpan(2)}}); err != nil {
		t.Fatalf("server stopped serving after an oversized message: %v", err)
	}
}

// panicky panics on every span.
type panicky struct{ discard }

func (panicky) ConsumeSpan(context.Context, *meta.Sender, *pb.PSpan) error { panic("injected") }

func TestPanicInHandlerIsInternal(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	in.spans = panicky{}
	conn := dial(t, in.Addrs()[0])
	span := pb.NewSpanClient(conn)
	_, err := span.SendSpanBatch(agentCtx("a1", 1), &pb.PSpanMessageBatch{Span: []*pb.PSpanMessage{validSpan(1)}})
	if status.Code(err) != codes.Internal {
		t.Fatalf("batch: got %v, want INTERNAL", err)
	}
	stream, err := span.SendSpan(agentCtx("a1", 1))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(validSpan(2))
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Internal {
		t.Fatalf("stream: got %v, want INTERNAL", err)
	}
	if _, err := pb.NewAgentClient(conn).RequestAgentInfo(agentCtx("a1", 1), &pb.PAgentInfo{Hostname: "h"}); err != nil {
		t.Fatalf("server stopped serving after a panic: %v", err)
	}
	if st := in.counters.snapshot(); st.Rejected[reasonPanic] != 2 {
		t.Fatalf("rejected %v", st.Rejected)
	}
	if b := in.budget.stats(); b.InUse != 0 {
		t.Fatalf("the panicking calls left %d bytes of the receive budget charged", b.InUse)
	}
}

// TestManyAgentsAtOnce connects 200 agents concurrently, each registering, pinging and
// holding its command stream, as real agents do at start.
func TestManyAgentsAtOnce(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	pings := make([]grpc.BidiStreamingClient[pb.PPing, pb.PPing], n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := grpc.NewClient(in.Addrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(func() { conn.Close() })
			ctx := agentCtx(fmt.Sprintf("agent-%03d", i), 1000+int64(i))
			if _, err := pb.NewAgentClient(conn).RequestAgentInfo(ctx, &pb.PAgentInfo{Hostname: "h"}); err != nil {
				errs <- err
				return
			}
			ping, err := pb.NewAgentClient(conn).PingSession(ctx)
			if err == nil {
				err = ping.Send(&pb.PPing{})
			}
			if err == nil {
				_, err = ping.Recv()
			}
			pings[i] = ping
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := in.counters.snapshot()
	connected := 0
	for _, a := range st.Agents {
		if a.Connected {
			connected++
		}
	}
	records, err := in.Meta().Agents()
	if len(st.Agents) != n || connected != n || len(records) != n || err != nil {
		t.Fatalf("agents %d connected %d persisted %d (%v)", len(st.Agents), connected, len(records), err)
	}
	for _, p := range pings {
		_ = p.CloseSend()
		if _, err := p.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("ping stream did not end cleanly: %v", err)
		}
	}
}

// TestCommandStreamStaysOpen checks the handshake is accepted and nothing is sent back
// until the agent closes.
func TestCommandStreamStaysOpen(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	cmd := pb.NewProfilerCommandServiceClient(dial(t, in.Addrs()[0]))
	for _, open := range []func(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[pb.PCmdMessage, pb.PCmdRequest], error){cmd.HandleCommand, cmd.HandleCommandV2} {
		s, err := open(agentCtx("a1", 1))
		if err != nil {
			t.Fatal(err)
		}
		hs := &pb.PCmdMessage{Message: &pb.PCmdMessage_HandshakeMessage{HandshakeMessage: &pb.PCmdServiceHandshake{SupportCommandServiceKey: []int32{710}}}}
		if err := s.Send(hs); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("command stream answered %v, want a clean end", err)
		}
	}
	if _, err := cmd.CommandEcho(agentCtx("a1", 1), &pb.PCmdEchoResponse{}); err != nil {
		t.Fatal(err)
	}
	if got := in.counters.snapshot().Messages["PCmdMessage"]; got != 3 {
		t.Fatalf("command messages %d", got)
	}
}

// TestRandomBytesEverywhere sends random bytes to every unary method: each is answered
// with a status (never a crash), and the server keeps serving.
func TestRandomBytesEverywhere(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	conn := dial(t, in.Addrs()[0])
	var methods []string
	for _, d := range serviceDescs() {
		for _, m := range d.Methods {
			methods = append(methods, "/"+d.ServiceName+"/"+m.MethodName)
		}
	}
	sort.Strings(methods)
	for _, m := range methods {
		for i := 0; i < 20; i++ {
			b := make([]byte, 1+i*13)
			_, _ = rand.Read(b)
			raw, out := replay.Raw(b), replay.Raw{}
			err := conn.Invoke(agentCtx("a1", 1), m, &raw, &out, grpc.ForceCodec(replay.RawCodec{}))
			if c := status.Code(err); c != codes.OK && c != codes.InvalidArgument {
				t.Fatalf("%s: %v", m, err)
			}
		}
	}
	if _, err := pb.NewAgentClient(conn).RequestAgentInfo(agentCtx("a1", 1), &pb.PAgentInfo{}); err != nil {
		t.Fatal(err)
	}
}

// TestStatsAfterRestartCarryAgentInfo: agents never re-register, so stats that arrive after
// an apmkit restart are tagged from the agent info persisted in the first run.
func TestStatsAfterRestartCarryAgentInfo(t *testing.T) {
	rec := recordings(t)[0]
	dir := t.TempDir()
	h1 := inputstest.New(t, dir)
	in1 := startInput(t, h1, nil)
	mustReplay(t, in1, rec.Only("/v1.Agent/RequestAgentInfo"))
	stopInput(t, in1)
	h1.Close()

	h2 := inputstest.New(t, dir)
	in2 := startInput(t, h2, nil)
	mustReplay(t, in2, rec.Only("/v1.Stat/SendAgentStat"))
	jvm := 0
	for _, p := range h2.Points(point.Metric) {
		if p.Name != "pinpoint_jvm" {
			continue
		}
		jvm++
		for _, tag := range []string{"hostname", "ip", "pid", "agentVersion", "service", "agent_id"} {
			if v, ok := p.Tag(tag); !ok || v == "" {
				t.Fatalf("pinpoint_jvm after restart lacks tag %s: %v", tag, p.Tags)
			}
		}
		if v, _ := p.Tag("hostname"); v != "vm" {
			t.Fatalf("hostname %q, want the recorded vm", v)
		}
	}
	if int64(jvm) != rec.Manifest.Int("messages.PAgentStat_entries_in_batches") {
		t.Fatalf("%d jvm points", jvm)
	}
}

// TestDecodeOnly counts what it receives and writes nothing.
func TestDecodeOnly(t *testing.T) {
	rec := recordings(t)[0]
	h := inputstest.New(t, "")
	in := startInput(t, h, func(c *Config) { c.DecodeOnly = true })
	mustReplay(t, in, rec)
	checkCounters(t, in.counters.snapshot(), rec.Manifest)
	if n := len(h.Points(point.Tracing)) + len(h.Points(point.Metric)); n != 0 {
		t.Fatalf("decode_only wrote %d points", n)
	}
}

// TestConnectedWhileAnyStreamIsOpen: an agent run counts as connected while any of its
// streams is open, not only its ping stream (the Go agent reopens that one only on its
// next tick, while its spans keep flowing).
func TestConnectedWhileAnyStreamIsOpen(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	ctx := agentCtx("span-only", 42)
	connected := func() bool {
		for _, a := range in.counters.snapshot().Agents {
			if a.AgentID == "span-only" {
				return a.Connected
			}
		}
		return false
	}
	stream, err := pb.NewSpanClient(dial(t, in.Addrs()[0])).SendSpan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "agent connected by its span stream", connected)
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "agent disconnected once its last stream ended", func() bool { return !connected() })
}
