package trace

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// Fuzz input: a sequence of operations, each an op byte and, for messages, a 2-byte length
// and that many bytes of protobuf. The op byte is kind (bits 0-2), sender (bit 3) and an
// argument (bits 4-7):
//
//	kind 0: PSpan
//	kind 1: PSpanChunk
//	kind 2: PSpanMessage (as SendSpan carries it)
//	kind 3: advance the clock by argument*10 s, run the background work
//	kind 4: store api metadata id argument for the sender, run the background work
//	other:  run the background work
const (
	fuzzMaxHeld    = 4
	fuzzMaxPending = 4
)

var fuzzSenders = []*meta.Sender{
	{AgentKey: meta.AgentKey{AgentID: "fa", StartTime: 1}, AgentName: "fa", ApplicationName: "fa", ServiceType: 1010},
	{AgentKey: meta.AgentKey{AgentID: "fb", StartTime: 2}, AgentName: "fb", ApplicationName: "fb", ServiceType: 1800},
}

func FuzzAssembler(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(runFuzzInput)
}

func runFuzzInput(t *testing.T, data []byte) {
	{
		h := newHarness(t, func(o *Options) {
			o.MaxHeldSpans, o.MaxHeldBytes = fuzzMaxHeld, 1<<16
			o.MaxPendingSpans, o.MaxPendingBytes = fuzzMaxPending, 1<<16
			o.MaxSkeletonEvents = 64
		})
		h.sink.fail = nil
		ctx := context.Background()
		for len(data) > 0 {
			op := data[0]
			data = data[1:]
			var payload []byte
			if op&7 <= 2 {
				if len(data) < 2 {
					return
				}
				n := int(binary.BigEndian.Uint16(data))
				data = data[2:]
				if n > len(data) {
					n = len(data)
				}
				payload, data = data[:n], data[n:]
			}
			fuzzStep(t, h, ctx, op, payload)
			checkFuzzState(t, h)
		}
		if err := h.asm.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		checkFuzzState(t, h)
	}
}

func fuzzStep(t *testing.T, h *harness, ctx context.Context, op byte, payload []byte) {
	s := fuzzSenders[op>>3&1]
	arg := int32(op >> 4)
	switch op & 7 {
	case 0:
		m := &pb.PSpan{}
		if proto.Unmarshal(payload, m) == nil {
			_ = h.asm.ConsumeSpan(ctx, s, m)
		}
	case 1:
		m := &pb.PSpanChunk{}
		if proto.Unmarshal(payload, m) == nil {
			_ = h.asm.ConsumeChunk(ctx, s, m)
		}
	case 2:
		m := &pb.PSpanMessage{}
		if proto.Unmarshal(payload, m) == nil {
			_ = feedSpanMessage(h, ctx, s, m)
		}
	case 3:
		h.clock.Advance(time.Duration(arg) * 10 * time.Second)
		_ = h.asm.processDue(ctx)
	case 4:
		_ = h.meta.PutAPI(s.AgentKey, &pb.PApiMetaData{ApiId: arg, ApiInfo: "fuzz.Api.call(int)"})
		_ = h.asm.processDue(ctx)
	default:
		_ = h.asm.processDue(ctx)
	}
}

// checkFuzzState: every point written so far is valid line protocol, and memory stays
// within the caps.
func checkFuzzState(t *testing.T, h *harness) {
	t.Helper()
	h.sink.mu.Lock()
	spans := h.sink.spans
	h.sink.spans, h.sink.batches = nil, nil
	h.sink.mu.Unlock()
	for _, sp := range spans {
		var ref []byte
		for _, p := range sp.Points() {
			if err := p.Validate(); err != nil {
				t.Fatalf("invalid point: %v", err)
			}
			line, err := point.AppendLine(nil, p)
			if err != nil {
				t.Fatalf("unencodable point: %v", err)
			}
			ref = append(ref, line...)
		}
		if got := sp.AppendLines(nil); !bytes.Equal(got, ref) {
			t.Fatalf("span encoder differs from line-protocol/v2:\n%q\n%q", got, ref)
		}
	}
	st := h.asm.Stats()
	if st.Held > fuzzMaxHeld || st.HeldBytes > 1<<16 || st.PendingSpans > fuzzMaxPending || st.PendingBytes > 1<<16 {
		t.Fatalf("caps exceeded: %+v", st)
	}
}

// fuzzSeeds encodes real traffic (the recordings) and generated trees into the fuzz
// input format, so the fuzzer starts from messages that decode and link.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	add := func(ops []byte, msgs ...proto.Message) []byte {
		for i, m := range msgs {
			raw, err := proto.Marshal(m)
			if err != nil || len(raw) > 0xffff {
				continue
			}
			ops = append(ops, byte(i%2)<<3|opFor(m))
			ops = binary.BigEndian.AppendUint16(ops, uint16(len(raw)))
			ops = append(ops, raw...)
		}
		return ops
	}
	if recs, err := replay.All(); err == nil {
		for _, rec := range recs {
			var msgs []proto.Message
			for _, ev := range rec.Events {
				if ev.Event != "msg" || len(msgs) >= 12 {
					continue
				}
				raw, _ := ev.Bytes()
				switch ev.Method {
				case "/v1.Span/SendSpanBatch":
					b := &pb.PSpanMessageBatch{}
					if proto.Unmarshal(raw, b) == nil {
						for _, m := range b.GetSpan() {
							msgs = append(msgs, m)
						}
					}
				case "/v1.Span/SendSpan":
					m := &pb.PSpanMessage{}
					if proto.Unmarshal(raw, m) == nil {
						msgs = append(msgs, m)
					}
				}
			}
			seeds = append(seeds, append(add(nil, msgs...), 4|1<<4, 3|13<<4))
		}
	}
	r := rand.New(rand.NewPCG(3, 3))
	for i := range 8 {
		g := &genState{r: r, goStyle: i%2 == 0}
		_, ds := g.genTransaction([]meta.Sender{*fuzzSenders[0], *fuzzSenders[1]}, int64(i))
		var msgs []proto.Message
		for _, d := range ds {
			if d.span != nil {
				msgs = append(msgs, d.span)
			} else {
				msgs = append(msgs, d.chunk)
			}
		}
		seeds = append(seeds, append(add(nil, msgs...), 3|13<<4))
	}
	return seeds
}

func opFor(m proto.Message) byte {
	switch m.(type) {
	case *pb.PSpan:
		return 0
	case *pb.PSpanChunk:
		return 1
	}
	return 2
}
