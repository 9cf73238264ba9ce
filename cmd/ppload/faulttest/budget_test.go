package faulttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// maxBatchBytes is the size of the test's batches: just under Pinpoint's (and apmkit's
// default) 4 MiB message limit.
const maxBatchBytes = 4<<20 - 32<<10

// burstGen is the span shape of the burst: realistic 12-event spans (ppload's default),
// without linked calls or async chunks, so each PSpan sent is exactly one entry span.
var burstGen = gen.Options{Events: 12, ErrorFrac: 0.05}

// TestReceiveBudget sends 16 SendSpanBatch calls of just under 4 MiB of realistic spans at
// once, from 16 agents, to apmkit with its default receive settings: without a budget,
// decoding and handling them took apmkit's RSS from 23 MiB to 1.4 GB. Each call is either
// taken or answered RESOURCE_EXHAUSTED, which the agent answers by sending the batch again
// after a pause. The test checks that apmkit's peak RSS (VmHWM, read once the burst is
// done) stayed under the bound of README's "Sizing memory", that every batch was
// eventually taken, every refusal was RESOURCE_EXHAUSTED and counted as such, and that
// every span was written exactly once (file output: a sink under the race detector would
// take minutes to read 600 MB of line protocol).
func TestReceiveBudget(t *testing.T) {
	short(t)
	c := defaultIOConf()
	out := t.TempDir()
	c.Outputs = fmt.Sprintf("[[io.outputs]]\n  type = \"file\"\n  dir = %q\n  max_file_mb = 1024\n  max_files = 100\n", out)
	ap := startApmkit(t, "", c)
	const agents = 16

	// One batch, generated and encoded once (the race detector makes that slow); each
	// agent sends it with its own agent id, which has the same length in every agent's
	// copy, so the copies stay valid protobuf.
	start := time.Now().UnixMilli()
	template := gen.Agent{ID: "rb-00", Name: "budget-00", Role: gen.Web, StartTime: start}
	spans, wire := maxBatch(t, template)
	ctx := context.Background()
	var senders []*Agent
	batches := make([]replay.Raw, agents)
	want := map[EntryID]bool{}
	for i := range agents {
		id := gen.Agent{ID: fmt.Sprintf("rb-%02d", i), Name: fmt.Sprintf("budget-%02d", i), Role: gen.Web, StartTime: start}
		a, err := DialAgent(ap.grpcAddr, id, NewLedger(), 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		if err := a.Handshake(ctx); err != nil {
			t.Fatal(err)
		}
		senders = append(senders, a)
		batches[i] = bytes.ReplaceAll(wire, []byte(template.ID), []byte(id.ID))
		for _, s := range spans {
			want[EntryID{Trace: fmt.Sprintf("%s^%d^%d", id.ID, start, s.GetTransactionId().GetSequence()), Span: strconv.FormatInt(s.GetSpanId(), 10)}] = true
		}
	}
	idleKB := ap.procStatus("VmRSS")

	type outcome struct {
		refused int      // RESOURCE_EXHAUSTED answers before the batch was taken
		errs    []string // any other answer
		taken   bool
	}
	outcomes := make([]outcome, agents)
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for i, a := range senders {
		wg.Go(func() {
			<-begin
			o := &outcomes[i]
			for attempt := 0; attempt < 100 && !o.taken && len(o.errs) == 0; attempt++ {
				cctx, cancel := context.WithTimeout(a.ctx(ctx), 60*time.Second)
				var reply replay.Raw
				err := a.cc.Invoke(cctx, "/v1.Span/SendSpanBatch", &batches[i], &reply, grpc.ForceCodec(replay.RawCodec{}))
				cancel()
				var res pb.PSpanResultBatch
				if err == nil {
					err = proto.Unmarshal(reply, &res)
				}
				switch {
				case status.Code(err) == codes.ResourceExhausted:
					o.refused++
					time.Sleep(time.Duration(200+50*i) * time.Millisecond) // the agent's pause before it sends again
				case err != nil:
					o.errs = append(o.errs, err.Error())
				case res.GetPartialSuccess() != nil:
					o.errs = append(o.errs, "partial success: "+res.GetPartialSuccess().GetErrorMessage())
				default:
					o.taken = true
				}
			}
		})
	}
	t0 := time.Now()
	close(begin)
	wg.Wait()
	burst := time.Since(t0)
	peakKB := ap.procStatus("VmHWM")

	refused := 0
	for i, o := range outcomes {
		refused += o.refused
		if !o.taken || len(o.errs) > 0 {
			t.Errorf("agent %d: batch taken %v after %d RESOURCE_EXHAUSTED answers; other answers: %v", i, o.taken, o.refused, o.errs)
		}
	}
	m := ap.metrics()
	budgetKB := int64(m.sum("apmkit_pinpoint_receive_budget_capacity_bytes")) >> 10
	t.Logf("%d batches of %.1f MiB (%d spans each) taken in %s, after %d RESOURCE_EXHAUSTED answers; RSS idle %.0f MiB, peak %.0f MiB; receive budget %.0f MiB, its peak %.0f MiB",
		agents, float64(len(wire))/(1<<20), len(spans), burst.Round(time.Millisecond), refused,
		mib(idleKB), mib(peakKB), mib(budgetKB), budgetPeak(t, ap)/(1<<20))
	if n := m.sum("apmkit_pinpoint_rejected_total", "reason=budget_exhausted"); int(n) != refused {
		t.Errorf("apmkit counted %v calls refused for the budget; the agents got %d RESOURCE_EXHAUSTED answers", n, refused)
	}
	if n := m.sum("apmkit_pinpoint_receive_budget_bytes"); n != 0 {
		t.Errorf("%v bytes of the receive budget still charged after every call was answered", n)
	}

	// README's bound: RSS at rest, plus twice (Go's GC lets the heap grow to twice what is
	// live) the receive budget and the bytes of the calls being received (gRPC reads a
	// message whole before apmkit can charge it: here up to 16 batches), plus the
	// uploader's memory, plus 64 MiB for what an idle process has not allocated yet
	// (connection buffers, the cache's tables). The peak is what the kernel recorded, read
	// after the burst: not a timing.
	inFlightKB := int64(agents*maxBatchBytes) >> 10
	boundKB := idleKB + 2*(budgetKB+inFlightKB) + 8*c.memoryBytes()>>10 + 64<<10
	if budgetKB == 0 || peakKB > boundKB {
		t.Errorf("peak RSS %.0f MiB over the bound %.0f MiB (idle %.0f MiB, receive budget %.0f MiB)", mib(peakKB), mib(boundKB), mib(idleKB), mib(budgetKB))
	}

	waitWritten(t, ap)
	got := entrySpansIn(t, out)
	missing, extra, dups := 0, 0, 0
	for id := range want {
		if got[id] == 0 {
			missing++
		}
	}
	for id, n := range got {
		if !want[id] {
			extra++
		}
		if n > 1 {
			dups++
		}
	}
	if missing+extra+dups > 0 {
		t.Errorf("output: %d entry spans, want exactly the %d sent: %d missing, %d never sent, %d written more than once", len(got), len(want), missing, extra, dups)
	}
}

// maxBatch is a batch of one agent's spans, encoded, of just under maxBatchBytes.
func maxBatch(t *testing.T, id gen.Agent) ([]*pb.PSpan, []byte) {
	t.Helper()
	g, err := gen.New(burstGen, id, 7)
	if err != nil {
		t.Fatal(err)
	}
	var spans []*pb.PSpan
	var wire []byte
	now := time.Now().UnixMilli()
	for {
		for _, m := range g.Next(now, nil).Own {
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(wire)+protowire.SizeTag(1)+protowire.SizeBytes(len(b)) > maxBatchBytes {
				return spans, wire
			}
			wire = protowire.AppendTag(wire, 1, protowire.BytesType) // PSpanMessageBatch.span
			wire = protowire.AppendBytes(wire, b)
			spans = append(spans, m.GetSpan())
		}
	}
}

// waitWritten waits until apmkit's uploader wrote every tracing point it took in: nothing
// queued or spilled, and the points in equal to those sent plus those dropped.
func waitWritten(t *testing.T, ap *apmkitProc) {
	t.Helper()
	waitFor(t, 120*time.Second, "apmkit's uploader drained", func() (bool, string) {
		m := ap.metrics()
		queued := m.sum("apmkit_io_queue_points")
		memory := m.sum("apmkit_io_output_queue_batches")
		spill := m.sum("apmkit_io_spill_batches")
		in := m.sum("apmkit_io_points_in_total", "category=tracing")
		sent := m.sum("apmkit_io_points_sent_total", "category=tracing")
		dropped := 0.0
		for _, v := range tracingDropped(m) {
			dropped += v
		}
		state := fmt.Sprintf("queue %v points, output memory %v batches, spill %v batches; tracing points in %v, sent %v, dropped %v", queued, memory, spill, in, sent, dropped)
		return queued == 0 && memory == 0 && spill == 0 && in > 0 && in == sent+dropped, state
	})
}

// entrySpansIn reads the file output's tracing files: each entry span's id, with how often
// it was written.
func entrySpansIn(t *testing.T, dir string) map[EntryID]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "tracing-*.lp"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no tracing files in %s (%v)", dir, err)
	}
	ids := map[EntryID]int{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if !bytes.Contains(line, []byte(",span_type=entry")) {
				continue
			}
			pts, err := point.Parse(line)
			if err != nil || len(pts) != 1 {
				t.Fatalf("%s: line does not parse (%v): %.200s", name, err, line)
			}
			trace, ok1 := pts[0].Field("trace_id")
			span, ok2 := pts[0].Field("span_id")
			if !ok1 || !ok2 {
				t.Fatalf("%s: entry span without trace_id or span_id: %.200s", name, line)
			}
			ids[EntryID{Trace: trace.StringValue(), Span: span.StringValue()}]++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// budgetPeak is the receive budget's peak charge, from /v1/stats.
func budgetPeak(t *testing.T, ap *apmkitProc) float64 {
	t.Helper()
	b, err := ap.get("/v1/stats")
	if err != nil {
		t.Fatalf("GET /v1/stats: %v", err)
	}
	var st struct {
		Inputs []struct {
			Input string `json:"input"`
			Stats struct {
				Budget struct {
					Peak float64 `json:"peak_bytes"`
				} `json:"receive_budget"`
			} `json:"stats"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("/v1/stats: %v", err)
	}
	for _, in := range st.Inputs {
		if in.Input == "pinpoint" {
			return in.Stats.Budget.Peak
		}
	}
	t.Fatal("/v1/stats: no pinpoint input")
	return 0
}
