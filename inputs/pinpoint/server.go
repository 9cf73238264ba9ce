package pinpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// newServer builds the gRPC server every listener of the instance shares.
func (in *Input) newServer() (*grpc.Server, error) {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec{}),
		grpc.MaxRecvMsgSize(in.cfg.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(uint32(in.cfg.MaxConcurrentStreams)),
		// Agents ping every 30 s even without streams; grpc-go's default policy (5 min)
		// would answer GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Our own pings find half-open connections (agent host gone) so their streams end.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		// Memory per connection: hundreds of agents hold several connections each, and
		// grpc-go's defaults (32 KiB read and write buffers, flow-control windows that grow
		// with the measured bandwidth-delay product up to 16 MiB) let one busy connection
		// buffer megabytes when the pipeline slows down. Fixed windows bound what each
		// stream and connection can hold; agents' messages are small (a batch is at most
		// max_recv_msg_size and flows through the window piecewise).
		grpc.ReadBufferSize(16 << 10),
		grpc.WriteBufferSize(8 << 10),
		grpc.SharedWriteBuffer(true),
		grpc.InitialWindowSize(256 << 10),
		grpc.InitialConnWindowSize(512 << 10),
		// Stop waits for handlers, so nothing feeds the pipeline after the input stopped.
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(in.unaryInterceptor),
		grpc.ChainStreamInterceptor(in.streamInterceptor),
	}
	if in.cfg.TLSCertFile != "" {
		creds, err := credentials.NewServerTLSFromFile(in.cfg.TLSCertFile, in.cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("pinpoint: tls: %w", err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(opts...)
	for _, desc := range serviceDescs() {
		srv.RegisterService(desc, in)
	}
	return srv, nil
}

// unaryInterceptor recovers panics and checks the headers of every unary call.
func (in *Input) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer in.recoverPanic(info.FullMethod, &err)
	sender, err := parseSender(ctx)
	if err != nil {
		in.counters.reject(nil, reasonHeader)
		return nil, err
	}
	in.meta.Touch(sender.AgentKey)
	return handler(withSender(ctx, sender), req)
}

// streamInterceptor does the same for streams.
func (in *Input) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer in.recoverPanic(info.FullMethod, &err)
	sender, err := parseSender(ss.Context())
	if err != nil {
		in.counters.reject(nil, reasonHeader)
		return err
	}
	in.meta.Touch(sender.AgentKey)
	agent := in.counters.agent(sender)
	agent.streams.Add(1)
	defer agent.streams.Add(-1)
	return handler(srv, &senderStream{ServerStream: ss, ctx: withSender(ss.Context(), sender)})
}

type senderStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *senderStream) Context() context.Context { return s.ctx }

// recoverPanic turns a handler panic into INTERNAL for that call only: it is counted, and
// logged with its stack once per method so a poison message cannot flood the log.
func (in *Input) recoverPanic(method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	in.counters.panics.WithLabelValues(method).Inc()
	in.counters.reject(nil, reasonPanic)
	if _, logged := in.panicLogged.LoadOrStore(method, true); !logged {
		in.log.Error("pinpoint: handler panic recovered (further panics of this method are only counted)",
			"method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
	*err = status.Errorf(codes.Internal, "pinpoint: internal error in %s", method)
}

// unaryFunc handles one decoded unary request.
type unaryFunc[P proto.Message] func(in *Input, ctx context.Context, req P) (proto.Message, error)

// unaryMethod adapts fn to grpc's handler shape. The request is decoded leniently so a
// message that does not decode is INVALID_ARGUMENT, not a codec failure.
func unaryMethod[R any, P interface {
	*R
	proto.Message
}](service, method string, t msgType, fn unaryFunc[P]) grpc.MethodDesc {
	full := "/v1." + service + "/" + method
	return grpc.MethodDesc{MethodName: method, Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := srv.(*Input)
		req := P(new(R))
		f := protoFrame(req)
		f.admit = in.admitter(ctx, classControl, false, nil)
		if err := dec(f); err != nil {
			return nil, err
		}
		defer in.budget.release(f.held)
		handler := func(ctx context.Context, _ any) (any, error) {
			sender := senderFrom(ctx)
			if f.admitErr != nil {
				in.rejectAdmission(sender, f.admitErr)
				return nil, f.admitErr
			}
			if f.err != nil {
				in.counters.reject(sender, reasonDecode)
				return nil, status.Errorf(codes.InvalidArgument, "pinpoint: %s: %s does not decode: %v", method, t, f.err)
			}
			in.counters.count(sender, t)
			return fn(in, ctx, req)
		}
		if interceptor == nil {
			return handler(ctx, req)
		}
		return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, handler)
	}}
}

// recvLoop reads a client stream of control messages (pings, commands) until the client
// half-closes. Each message is admitted against the receive budget, decoded into f and
// handed to handle, which counts it; a message that does not decode is counted and skipped
// and never ends the stream.
func recvLoop(in *Input, stream grpc.ServerStream, f *frame, handle func(ctx context.Context)) error {
	ctx := stream.Context()
	method := methodName(stream)
	f.admit = in.admitter(ctx, classControl, true, nil)
	for {
		err := stream.RecvMsg(f)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err // transport gone, too large, cancelled: grpc reports the status
		}
		if f.admitErr != nil {
			if end := in.streamAdmission(ctx, f.admitErr); end != nil {
				return end
			}
			continue
		}
		func() {
			defer in.budget.release(f.held) // also when handle panics
			in.handleFrame(ctx, method, f, handle)
		}()
	}
}

// methodName is the short name of a stream's method (SendSpan, PingSession...), for labels.
func methodName(stream grpc.ServerStream) string {
	full, _ := grpc.MethodFromServerStream(stream)
	return full[strings.LastIndexByte(full, '/')+1:]
}
