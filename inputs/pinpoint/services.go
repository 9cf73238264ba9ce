package pinpoint

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// The services are described by hand rather than through the generated server interfaces:
// the handlers receive requests through the lenient frame codec (see codec.go), and
// SendSpanBatch decodes each span of a batch on its own so one bad span does not reject
// the other 49. The method names are checked against the generated constants in tests.

var success = &pb.PResult{Success: true}

func serviceDescs() []*grpc.ServiceDesc {
	return []*grpc.ServiceDesc{
		{
			ServiceName: "v1.Agent", HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{unaryMethod("Agent", "RequestAgentInfo", msgAgentInfo, (*Input).requestAgentInfo)},
			Streams: []grpc.StreamDesc{{StreamName: "PingSession", Handler: pingSession, ServerStreams: true, ClientStreams: true}},
		},
		{
			ServiceName: "v1.Metadata", HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{
				unaryMethod("Metadata", "RequestSqlMetaData", msgSQLMeta, func(in *Input, ctx context.Context, m *pb.PSqlMetaData) (proto.Message, error) {
					return in.storeMeta(ctx, in.meta.PutSQL(senderFrom(ctx).AgentKey, m))
				}),
				unaryMethod("Metadata", "RequestSqlUidMetaData", msgSQLUIDMeta, func(in *Input, ctx context.Context, m *pb.PSqlUidMetaData) (proto.Message, error) {
					return in.storeMeta(ctx, in.meta.PutSQLUID(senderFrom(ctx).AgentKey, m))
				}),
				unaryMethod("Metadata", "RequestApiMetaData", msgAPIMeta, func(in *Input, ctx context.Context, m *pb.PApiMetaData) (proto.Message, error) {
					return in.storeMeta(ctx, in.meta.PutAPI(senderFrom(ctx).AgentKey, m))
				}),
				unaryMethod("Metadata", "RequestStringMetaData", msgStringMeta, func(in *Input, ctx context.Context, m *pb.PStringMetaData) (proto.Message, error) {
					return in.storeMeta(ctx, in.meta.PutString(senderFrom(ctx).AgentKey, m))
				}),
				unaryMethod("Metadata", "RequestExceptionMetaData", msgExceptionMeta, func(in *Input, ctx context.Context, m *pb.PExceptionMetaData) (proto.Message, error) {
					return in.storeMeta(ctx, in.meta.PutExceptions(senderFrom(ctx).AgentKey, m))
				}),
			},
		},
		{
			ServiceName: "v1.Span", HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{MethodName: "SendSpanBatch", Handler: sendSpanBatch}},
			Streams: []grpc.StreamDesc{{StreamName: "SendSpan", Handler: sendSpan, ClientStreams: true}},
		},
		{
			ServiceName: "v1.Stat", HandlerType: (*any)(nil),
			Streams: []grpc.StreamDesc{{StreamName: "SendAgentStat", Handler: sendAgentStat, ClientStreams: true}},
		},
		{
			ServiceName: "v1.ProfilerCommandService", HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{
				unaryMethod("ProfilerCommandService", "CommandEcho", msgCmdMessage, emptyAnswer[*pb.PCmdEchoResponse]),
				unaryMethod("ProfilerCommandService", "CommandActiveThreadDump", msgCmdMessage, emptyAnswer[*pb.PCmdActiveThreadDumpRes]),
				unaryMethod("ProfilerCommandService", "CommandActiveThreadLightDump", msgCmdMessage, emptyAnswer[*pb.PCmdActiveThreadLightDumpRes]),
			},
			Streams: []grpc.StreamDesc{
				{StreamName: "HandleCommand", Handler: handleCommand, ServerStreams: true, ClientStreams: true},
				{StreamName: "HandleCommandV2", Handler: handleCommand, ServerStreams: true, ClientStreams: true},
				{StreamName: "CommandStreamActiveThreadCount", Handler: commandStream, ClientStreams: true},
			},
		},
	}
}

// requestAgentInfo persists the agent run and always answers success: the Go agent treats
// success=false as "disabled for the life of the process".
func (in *Input) requestAgentInfo(ctx context.Context, info *pb.PAgentInfo) (proto.Message, error) {
	sender := senderFrom(ctx)
	if err := in.meta.PutAgent(*sender, info); err != nil {
		in.counters.reject(sender, reasonStore)
		in.log.Warn("pinpoint: agent info not persisted", "agent", sender.AgentKey.String(), "error", err)
	}
	if err := in.stats.ConsumeAgentInfo(ctx, sender, info); err != nil {
		in.counters.reject(sender, reasonConsumer)
	}
	return success, nil
}

// storeMeta answers a metadata call. A cache failure is counted, not answered as failure:
// the name is still served from memory, and failing would only make agents retry into the
// same full cache.
func (in *Input) storeMeta(ctx context.Context, err error) (proto.Message, error) {
	if err != nil {
		in.counters.reject(senderFrom(ctx), reasonStore)
	}
	return success, nil
}

// pingSession answers every PPing and stays open until the agent closes the stream.
func pingSession(srv any, stream grpc.ServerStream) error {
	in := srv.(*Input)
	sender := senderFrom(stream.Context())
	agent := in.counters.agent(sender)
	if agent.pingStreams.Add(1) == 1 {
		in.counters.connected.Inc()
	}
	defer func() {
		if agent.pingStreams.Add(-1) == 0 {
			in.counters.connected.Dec()
		}
	}()
	var ping pb.PPing
	var sendErr error
	err := recvLoop(in, stream, protoFrame(&ping), func(context.Context) {
		in.counters.count(sender, msgPing)
		if sendErr == nil {
			sendErr = stream.SendMsg(&pb.PPing{})
		}
	})
	return errors.Join(err, sendErr)
}

// sendSpan reads one PSpanMessage per stream message, until the agent half-closes or the
// input stops.
func sendSpan(srv any, stream grpc.ServerStream) error {
	in := srv.(*Input)
	leave, err := in.admitData(stream.Context())
	if err != nil {
		return err
	}
	defer leave()
	// A fresh message each time: the consumer may keep what it gets.
	err = recvData(in, stream, func() *pb.PSpanMessage { return &pb.PSpanMessage{} }, func(ctx context.Context, msg *pb.PSpanMessage) {
		if reason := in.handleSpanMessage(ctx, senderFrom(ctx), "SendSpan", msg); reason != "" {
			in.counters.reject(senderFrom(ctx), reason)
		}
	})
	if err != nil {
		return err
	}
	return stream.SendMsg(&emptypb.Empty{})
}

// spanBatch is a PSpanMessageBatch decoded span by span.
type spanBatch struct {
	spans     []*pb.PSpanMessage
	rejected  int64
	firstErr  error
	malformed []string // why each span that did not decode was rejected (decodeReason)
}

var spanBatchDesc = (&pb.PSpanMessageBatch{}).ProtoReflect().Descriptor()

// decodeBatch walks the batch's field 1 entries itself, so a span that does not decode is
// rejected alone and the rest of the batch is kept.
func (b *spanBatch) decode(buf []byte) error {
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			b.rejectEnvelope(protowire.ParseError(n))
			return nil
		}
		buf = buf[n:]
		if num != 1 || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, buf)
			if n < 0 {
				b.rejectEnvelope(protowire.ParseError(n))
				return nil
			}
			buf = buf[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(buf)
		if n < 0 {
			b.rejectEnvelope(protowire.ParseError(n))
			return nil
		}
		buf = buf[n:]
		m := &pb.PSpanMessage{}
		if err := proto.Unmarshal(v, m); err != nil {
			b.reject(fmt.Errorf("span message %d: %w", len(b.spans)+int(b.rejected)+1, err))
			b.malformed = append(b.malformed, decodeReason(err))
			continue
		}
		b.spans = append(b.spans, m)
	}
	return nil
}

// rejectEnvelope rejects the rest of a batch whose envelope does not parse.
func (b *spanBatch) rejectEnvelope(err error) {
	b.reject(fmt.Errorf("batch envelope: %w", err))
	b.malformed = append(b.malformed, malformedNotProtobuf)
}

func (b *spanBatch) reject(err error) {
	b.rejected++
	if b.firstErr == nil {
		b.firstErr = err
	}
}

// Error ids of a partial_success answer.
const (
	errIDDecode   = 1 // a span message did not decode
	errIDInvalid  = 2 // a span message decoded but is not valid
	errIDConsumer = 3 // apmkit could not take the span (e.g. queues full)
)

// sendSpanBatch answers an empty PSpanResultBatch when every span was accepted, else
// partial_success with the rejected count and the first reason.
func sendSpanBatch(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := srv.(*Input)
	batch := &spanBatch{}
	f := &frame{decode: batch.decode, desc: spanBatchDesc, admit: in.admitter(ctx, classData, false, in.data.draining())}
	if err := dec(f); err != nil {
		return nil, err
	}
	// The batch's charge is released once its spans are handed on (the answer is tiny).
	defer in.budget.release(f.held)
	handler := func(ctx context.Context, _ any) (any, error) {
		sender := senderFrom(ctx)
		if f.admitErr != nil {
			in.rejectAdmission(sender, f.admitErr)
			return nil, f.admitErr
		}
		leave, err := in.admitData(ctx)
		if err != nil {
			return nil, err
		}
		defer leave()
		in.counters.count(sender, msgSpanMessageBatch)
		errID := int64(0)
		if batch.rejected > 0 {
			errID = errIDDecode
			for range batch.rejected {
				in.counters.reject(sender, reasonDecode)
			}
			for _, reason := range batch.malformed {
				in.malformed("SendSpanBatch", reason)
			}
		}
		spans := batch.spans
		batch.spans = nil
		for i, m := range spans {
			spans[i] = nil // handed on: the batch keeps no reference to it
			reason := in.handleSpanMessage(ctx, sender, "SendSpanBatch", m)
			if reason == "" {
				continue
			}
			in.counters.reject(sender, reason)
			batch.reject(errors.New(reason))
			if errID == 0 {
				errID = errIDInvalid
				if reason == reasonConsumer {
					errID = errIDConsumer
				}
			}
		}
		if batch.rejected == 0 {
			return &pb.PSpanResultBatch{}, nil
		}
		return &pb.PSpanResultBatch{PartialSuccess: &pb.PPartialSuccess{
			RejectedSpans: batch.rejected, ErrorId: errID, ErrorMessage: batch.firstErr.Error(),
		}}, nil
	}
	if interceptor == nil {
		return handler(ctx, nil)
	}
	return interceptor(ctx, nil, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/v1.Span/SendSpanBatch"}, handler)
}

// handleSpanMessage counts, validates and hands on one span or chunk received by method.
// It returns the reject reason, or "" when the message was taken; a malformed one is also
// counted by what is wrong with it.
func (in *Input) handleSpanMessage(ctx context.Context, sender *meta.Sender, method string, m *pb.PSpanMessage) string {
	in.counters.count(sender, msgSpanMessage)
	switch {
	case m.GetSpan() != nil:
		span := m.GetSpan()
		in.counters.count(sender, msgSpan)
		if bad := invalidSpan(span.GetVersion(), span.GetTransactionId()); bad != "" {
			in.malformed(method, bad)
			return reasonInvalid
		}
		if err := in.spans.ConsumeSpan(ctx, sender, span); err != nil {
			return reasonConsumer
		}
	case m.GetSpanChunk() != nil:
		chunk := m.GetSpanChunk()
		in.counters.count(sender, msgSpanChunk)
		if bad := invalidSpan(chunk.GetVersion(), chunk.GetTransactionId()); bad != "" {
			in.malformed(method, bad)
			return reasonInvalid
		}
		if err := in.spans.ConsumeChunk(ctx, sender, chunk); err != nil {
			return reasonConsumer
		}
	default:
		in.malformed(method, malformedEmpty)
		return reasonUnknownOneof
	}
	return ""
}

// invalidSpan is the malformed reason of a span or chunk that decoded but cannot be
// placed, or "".
func invalidSpan(version int32, tx *pb.PTransactionId) string {
	switch {
	case version != 1:
		return malformedVersion
	case tx == nil:
		return malformedNoTransaction
	}
	return ""
}

// sendAgentStat reads PStatMessages until the agent half-closes or the input stops.
func sendAgentStat(srv any, stream grpc.ServerStream) error {
	in := srv.(*Input)
	leave, err := in.admitData(stream.Context())
	if err != nil {
		return err
	}
	defer leave()
	// A fresh message each time: the consumer may keep what it gets.
	err = recvData(in, stream, func() *pb.PStatMessage { return &pb.PStatMessage{} }, func(ctx context.Context, msg *pb.PStatMessage) {
		sender := senderFrom(ctx)
		in.counters.count(sender, msgStatMessage)
		switch {
		case msg.GetAgentStat() != nil:
			in.counters.count(sender, msgAgentStat)
		case msg.GetAgentStatBatch() != nil:
			in.counters.count(sender, msgAgentStatBatch)
		case msg.GetAgentUriStat() != nil:
			in.counters.count(sender, msgAgentUriStat)
		case msg.GetProfilerMetric() != nil:
			in.counters.count(sender, msgProfilerMetric)
		default:
			in.malformed("SendAgentStat", malformedEmpty)
			in.counters.reject(sender, reasonUnknownOneof)
			return
		}
		if err := in.stats.ConsumeStat(ctx, sender, msg); err != nil {
			in.counters.reject(sender, reasonConsumer)
		}
	})
	if err != nil {
		return err
	}
	return stream.SendMsg(&emptypb.Empty{})
}

// handleCommand accepts the command handshake and holds the stream open without sending
// commands, as Pinpoint's own empty command service does: answering UNIMPLEMENTED makes
// the Go agent reopen the stream in a tight loop.
func handleCommand(srv any, stream grpc.ServerStream) error {
	in := srv.(*Input)
	var msg pb.PCmdMessage
	err := recvLoop(in, stream, protoFrame(&msg), func(ctx context.Context) {
		in.counters.count(senderFrom(ctx), msgCmdMessage)
	})
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// commandStream drains a client stream of command results apmkit never asked for.
func commandStream(srv any, stream grpc.ServerStream) error {
	in := srv.(*Input)
	var msg pb.PCmdActiveThreadCountRes
	if err := recvLoop(in, stream, protoFrame(&msg), func(context.Context) {}); err != nil {
		return err
	}
	return stream.SendMsg(&emptypb.Empty{})
}

func emptyAnswer[P proto.Message](*Input, context.Context, P) (proto.Message, error) {
	return &emptypb.Empty{}, nil
}
