package pb

// These tests decode recordings of a real pinpoint-go-agent's traffic
// (testdata/pinpoint at the repository root, format in its README) with our generated
// types. A message that decodes with no unknown fields anywhere proves that
// every field the agent sent has the number and wire type we declare (a wrong
// wire type fails decoding or lands in the unknown set); the counts compared
// with each recording's manifest prove that the fields land where they mean
// what the fact sheet says.

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// fixturesDir is relative to this package: the repository's copy of the recordings.
const fixturesDir = "../../../testdata/pinpoint"

// unknownFieldPaths returns the path of every message, at any depth, that
// holds fields its descriptor does not know.
func unknownFieldPaths(m protoreflect.Message, path string) []string {
	var out []string
	if len(m.GetUnknown()) > 0 {
		out = append(out, path)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					out = append(out, unknownFieldPaths(mv.Message(), fmt.Sprintf("%s[%v]", p, k))...)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					out = append(out, unknownFieldPaths(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))...)
				}
			}
		case fd.Message() != nil:
			out = append(out, unknownFieldPaths(v.Message(), p)...)
		}
		return true
	})
	return out
}

// TestUnknownFieldPathsFindsNested proves the walker can fail: an unknown
// field buried in an event inside a span inside a batch must be reported.
func TestUnknownFieldPathsFindsNested(t *testing.T) {
	event := marshal(t, &PSpanEvent{Sequence: 1})
	event = protowire.AppendTag(event, 99, protowire.VarintType)
	event = protowire.AppendVarint(event, 1)
	span := protowire.AppendTag(nil, 13, protowire.BytesType) // PSpan.spanEvent
	span = protowire.AppendBytes(span, event)
	msg := protowire.AppendTag(nil, 1, protowire.BytesType) // PSpanMessage.span
	msg = protowire.AppendBytes(msg, span)
	batch := protowire.AppendTag(nil, 1, protowire.BytesType) // PSpanMessageBatch.span
	batch = protowire.AppendBytes(batch, msg)

	var b PSpanMessageBatch
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(batch, &b); err != nil {
		t.Fatal(err)
	}
	got := unknownFieldPaths(b.ProtoReflect(), "PSpanMessageBatch")
	want := "PSpanMessageBatch.span[0].span.spanEvent[0]"
	if len(got) != 1 || got[0] != want {
		t.Errorf("unknown fields at %v, want [%s]", got, want)
	}
	if n := len(unknownFieldPaths((&PSpanMessageBatch{}).ProtoReflect(), "x")); n != 0 {
		t.Errorf("empty message reported %d unknown fields", n)
	}
}

// recordingEvent is one line of a pinpoint-recording/1 file.
type recordingEvent struct {
	Seq     int               `json:"seq"`
	Stream  string            `json:"stream"`
	Method  string            `json:"method"`
	Kind    string            `json:"kind"`
	Event   string            `json:"event"`
	Headers map[string]string `json:"headers"`
	Msg     string            `json:"msg"`
}

// manifest holds the parts of <name>.manifest.json this test checks.
type manifest struct {
	Methods map[string]struct {
		Calls int `json:"calls"`
		Msgs  int `json:"msgs"`
	} `json:"methods"`
	Messages struct {
		TopLevelByType            map[string]int `json:"top_level_by_type"`
		PSpan                     int            `json:"PSpan"`
		PSpanChunk                int            `json:"PSpanChunk"`
		ChunkWithLocalAsyncID     int            `json:"PSpanChunk_with_localAsyncId"`
		ChunkWithoutLocalAsyncID  int            `json:"PSpanChunk_without_localAsyncId"`
		StatAgentStat             int            `json:"PStatMessage_agentStat"`
		StatAgentStatBatch        int            `json:"PStatMessage_agentStatBatch"`
		StatAgentURIStat          int            `json:"PStatMessage_agentUriStat"`
		StatProfilerMetric        int            `json:"PStatMessage_profilerMetric"`
		AgentStatEntriesInBatches int            `json:"PAgentStat_entries_in_batches"`
		EachURIStatEntries        int            `json:"PEachUriStat_entries"`
		EachURIStatTotalCount     int64          `json:"PEachUriStat_total_count"`
		EachURIStatFailedCount    int64          `json:"PEachUriStat_failed_count"`
		ExceptionInExceptionMeta  int            `json:"PException_in_PExceptionMetaData"`
		Metadata                  map[string]int `json:"metadata"`
		DecodeErrors              int            `json:"decode_errors"`
		WithUnknownFields         int            `json:"with_unknown_fields"`
	} `json:"messages"`
	Traces struct {
		Transactions int `json:"transactions"`
		Spans        int `json:"spans"`
		RootSpans    int `json:"root_spans"`
		ErrorSpans   int `json:"error_spans"`
		SpanEvents   struct {
			Total         int `json:"total"`
			InSpans       int `json:"in_spans"`
			InChunks      int `json:"in_chunks"`
			InAsyncChunks int `json:"in_async_chunks"`
		} `json:"span_events"`
		Links struct {
			EventsWithNextSpanID int `json:"events_with_nextSpanId"`
		} `json:"parent_child_links"`
		Async struct {
			EventsWithAsyncEvent int `json:"events_with_asyncEvent"`
		} `json:"async"`
		APIIDs struct {
			EventsWithAPIID int `json:"events_with_apiId"`
			SpansWithAPIID  int `json:"spans_with_apiId"`
		} `json:"api_ids"`
		SQL struct {
			SQLIDAnnotations  int `json:"sql_id_annotations"`
			SQLUIDAnnotations int `json:"sql_uid_annotations"`
		} `json:"sql"`
		Exceptions struct {
			ExceptionInfo      int `json:"exceptionInfo_on_spans_and_events"`
			ChainIDAnnotations int `json:"exception_chain_id_annotations"`
		} `json:"exceptions"`
		SpansByRPC map[string]int `json:"root_spans_by_rpc"`
	} `json:"traces"`
}

// tally is what the test counts while decoding; the field names follow the
// manifest.
type tally struct {
	calls, msgs                       map[string]int
	topLevel                          map[string]int
	spans, chunks, chunksAsync        int
	statSingle, statBatch, statURI    int
	statProfiler                      int
	agentStatEntries, uriEntries      int
	uriTotal, uriFailed               int64
	metadata                          map[string]int
	exceptionsInMeta                  int
	transactions                      map[string]bool
	rootSpans, errorSpans             int
	eventsInSpans, eventsInChunks     int
	eventsInAsyncChunks               int
	eventsWithNextSpanID, eventsAsync int
	eventsWithAPIID, spansWithAPIID   int
	sqlID, sqlUID, chainID, excInfo   int
	rootByRPC                         map[string]int
}

func newTally() *tally {
	return &tally{
		calls: map[string]int{}, msgs: map[string]int{}, topLevel: map[string]int{},
		metadata: map[string]int{}, transactions: map[string]bool{}, rootByRPC: map[string]int{},
	}
}

func (c *tally) events(evs []*PSpanEvent) {
	for _, ev := range evs {
		if me := ev.GetNextEvent().GetMessageEvent(); me != nil && me.NextSpanId != 0 && me.NextSpanId != -1 {
			c.eventsWithNextSpanID++
		}
		if ev.AsyncEvent != 0 {
			c.eventsAsync++
		}
		if ev.ApiId != 0 {
			c.eventsWithAPIID++
		}
		if ev.ExceptionInfo != nil {
			c.excInfo++
		}
		for _, a := range ev.Annotation {
			switch a.Key {
			case 20:
				if a.GetValue().GetIntStringStringValue() != nil {
					c.sqlID++
				}
			case 25:
				c.sqlUID++
			case -52:
				c.chainID++
			}
		}
	}
}

func txid(id *PTransactionId, headers map[string]string) string {
	agent := id.GetAgentId()
	if agent == "" {
		agent = headers["agentid"]
	}
	return fmt.Sprintf("%s^%d^%d", agent, id.GetAgentStartTime(), id.GetSequence())
}

func (c *tally) spanMessage(m *PSpanMessage, headers map[string]string) {
	c.topLevel["PSpanMessage"]++
	switch {
	case m.GetSpan() != nil:
		s := m.GetSpan()
		c.spans++
		c.transactions[txid(s.TransactionId, headers)] = true
		if s.ParentSpanId == -1 {
			c.rootSpans++
			c.rootByRPC[s.GetAcceptEvent().GetRpc()]++
		}
		if s.Err > 0 {
			c.errorSpans++
		}
		if s.ApiId != 0 {
			c.spansWithAPIID++
		}
		if s.ExceptionInfo != nil {
			c.excInfo++
		}
		c.eventsInSpans += len(s.SpanEvent)
		c.events(s.SpanEvent)
	case m.GetSpanChunk() != nil:
		ch := m.GetSpanChunk()
		c.chunks++
		c.transactions[txid(ch.TransactionId, headers)] = true
		c.eventsInChunks += len(ch.SpanEvent)
		if ch.LocalAsyncId != nil {
			c.chunksAsync++
			c.eventsInAsyncChunks += len(ch.SpanEvent)
		}
		c.events(ch.SpanEvent)
	}
}

func sumBuckets(h *PUriHistogram) int64 {
	var n int64
	for _, b := range h.GetHistogram() {
		n += int64(b)
	}
	return n
}

func (c *tally) message(m proto.Message, headers map[string]string) {
	name := string(m.ProtoReflect().Descriptor().Name())
	switch v := m.(type) {
	case *PSpanMessage:
		c.spanMessage(v, headers)
		return // counted by spanMessage
	case *PSpanMessageBatch:
		for _, sm := range v.Span {
			c.spanMessage(sm, headers)
		}
	case *PStatMessage:
		switch f := v.Field.(type) {
		case *PStatMessage_AgentStat:
			c.statSingle++
		case *PStatMessage_AgentStatBatch:
			c.statBatch++
			c.agentStatEntries += len(f.AgentStatBatch.AgentStat)
		case *PStatMessage_AgentUriStat:
			c.statURI++
			c.uriEntries += len(f.AgentUriStat.EachUriStat)
			for _, e := range f.AgentUriStat.EachUriStat {
				c.uriTotal += sumBuckets(e.TotalHistogram)
				c.uriFailed += sumBuckets(e.FailedHistogram)
			}
		case *PStatMessage_ProfilerMetric:
			c.statProfiler++
		}
	case *PApiMetaData, *PSqlMetaData, *PSqlUidMetaData, *PStringMetaData:
		c.metadata[name]++
	case *PExceptionMetaData:
		c.metadata[name]++
		c.exceptionsInMeta += len(v.Exceptions)
	}
	c.topLevel[name]++
}

// requestType finds a method's request type through the service descriptor,
// so the test also proves our service table maps paths to the types the
// agent really sends.
func requestType(t *testing.T, method string) protoreflect.MessageType {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(method, "/"), "/")
	if len(parts) != 2 {
		t.Fatalf("bad method path %q", method)
	}
	sd := File_v1_Service_proto.Services().ByName(protoreflect.FullName(parts[0]).Name())
	if sd == nil || string(sd.FullName()) != parts[0] {
		t.Fatalf("recording uses service %q that Service.proto does not define", parts[0])
	}
	md := sd.Methods().ByName(protoreflect.Name(parts[1]))
	if md == nil {
		t.Fatalf("recording uses method %q that Service.proto does not define", method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return mt
}

func methodKind(t *testing.T, method string) string {
	parts := strings.Split(strings.TrimPrefix(method, "/"), "/")
	md := File_v1_Service_proto.Services().ByName(protoreflect.FullName(parts[0]).Name()).Methods().ByName(protoreflect.Name(parts[1]))
	return streamKind(md.IsStreamingClient(), md.IsStreamingServer())
}

func TestRecordings(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(fixturesDir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no recordings in %s", fixturesDir)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		t.Run(name, func(t *testing.T) {
			checkRecording(t, path, strings.TrimSuffix(path, ".jsonl")+".manifest.json")
		})
	}
}

func checkRecording(t *testing.T, path, manifestPath string) {
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	var want manifest
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("%s: %v", manifestPath, err)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20) // lines hold whole base64 messages
	got := newTally()
	headers := map[string]map[string]string{} // stream -> headers of its open event
	decodeErrors, withUnknown := 0, 0
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // the header object
		}
		var ev recordingEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if want := methodKind(t, ev.Method); ev.Kind != want {
			t.Errorf("line %d: %s recorded as %s, Service.proto says %s", line, ev.Method, ev.Kind, want)
		}
		switch ev.Event {
		case "open":
			headers[ev.Stream] = ev.Headers
			got.calls[ev.Method]++
			continue
		case "msg":
			got.msgs[ev.Method]++
		default:
			continue
		}
		b, err := base64.StdEncoding.DecodeString(ev.Msg)
		if err != nil {
			t.Fatalf("line %d: msg: %v", line, err)
		}
		m := requestType(t, ev.Method).New().Interface()
		if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, m); err != nil {
			decodeErrors++
			t.Errorf("line %d (seq %d, %s): decode: %v", line, ev.Seq, ev.Method, err)
			continue
		}
		if u := unknownFieldPaths(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name())); len(u) > 0 {
			withUnknown++
			more := ""
			if len(u) > 3 { // one wrong field repeats in every event: show a few
				more = fmt.Sprintf(" and %d more", len(u)-3)
				u = u[:3]
			}
			t.Errorf("line %d (seq %d, %s): unknown fields at %v%s", line, ev.Seq, ev.Method, u, more)
		}
		got.message(m, headers[ev.Stream])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, manifest says %v", what, got, want)
		}
	}
	check("decode errors", decodeErrors, want.Messages.DecodeErrors)
	check("messages with unknown fields", withUnknown, want.Messages.WithUnknownFields)
	for method, m := range want.Methods {
		check(method+" calls", got.calls[method], m.Calls)
		check(method+" msgs", got.msgs[method], m.Msgs)
	}
	check("methods seen", len(got.calls), len(want.Methods))
	check("top-level message types", got.topLevel, want.Messages.TopLevelByType) // fmt sorts map keys
	check("PSpan", got.spans, want.Messages.PSpan)
	check("PSpanChunk", got.chunks, want.Messages.PSpanChunk)
	check("PSpanChunk with localAsyncId", got.chunksAsync, want.Messages.ChunkWithLocalAsyncID)
	check("PSpanChunk without localAsyncId", got.chunks-got.chunksAsync, want.Messages.ChunkWithoutLocalAsyncID)
	check("PStatMessage agentStat", got.statSingle, want.Messages.StatAgentStat)
	check("PStatMessage agentStatBatch", got.statBatch, want.Messages.StatAgentStatBatch)
	check("PStatMessage agentUriStat", got.statURI, want.Messages.StatAgentURIStat)
	check("PStatMessage profilerMetric", got.statProfiler, want.Messages.StatProfilerMetric)
	check("PAgentStat entries in batches", got.agentStatEntries, want.Messages.AgentStatEntriesInBatches)
	check("PEachUriStat entries", got.uriEntries, want.Messages.EachURIStatEntries)
	check("PEachUriStat total count", got.uriTotal, want.Messages.EachURIStatTotalCount)
	check("PEachUriStat failed count", got.uriFailed, want.Messages.EachURIStatFailedCount)
	check("metadata", got.metadata, want.Messages.Metadata)
	check("PException in PExceptionMetaData", got.exceptionsInMeta, want.Messages.ExceptionInExceptionMeta)

	check("transactions", len(got.transactions), want.Traces.Transactions)
	check("spans", got.spans, want.Traces.Spans)
	check("root spans", got.rootSpans, want.Traces.RootSpans)
	check("root spans by rpc", got.rootByRPC, want.Traces.SpansByRPC)
	check("error spans", got.errorSpans, want.Traces.ErrorSpans)
	check("span events in spans", got.eventsInSpans, want.Traces.SpanEvents.InSpans)
	check("span events in chunks", got.eventsInChunks, want.Traces.SpanEvents.InChunks)
	check("span events in async chunks", got.eventsInAsyncChunks, want.Traces.SpanEvents.InAsyncChunks)
	check("span events total", got.eventsInSpans+got.eventsInChunks, want.Traces.SpanEvents.Total)
	check("events with nextSpanId", got.eventsWithNextSpanID, want.Traces.Links.EventsWithNextSpanID)
	check("events with asyncEvent", got.eventsAsync, want.Traces.Async.EventsWithAsyncEvent)
	check("events with apiId", got.eventsWithAPIID, want.Traces.APIIDs.EventsWithAPIID)
	check("spans with apiId", got.spansWithAPIID, want.Traces.APIIDs.SpansWithAPIID)
	check("SQL-ID annotations", got.sqlID, want.Traces.SQL.SQLIDAnnotations)
	check("SQL-UID annotations", got.sqlUID, want.Traces.SQL.SQLUIDAnnotations)
	check("exceptionInfo on spans and events", got.excInfo, want.Traces.Exceptions.ExceptionInfo)
	check("exception chain id annotations", got.chainID, want.Traces.Exceptions.ChainIDAnnotations)
}
