package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// agent is one emulated agent run with its own connections, as real agents open one
// channel per sender (agent+metadata+command, stat, span).
type agent struct {
	id     gen.Agent
	callee *agent // the API agent a Web agent calls in linked transactions
	rec    *record
	// outbox holds the span messages waiting for the sender, in send order. Producers of
	// this agent and of its caller write to it.
	outbox chan *pb.PSpanMessage

	agentCC, statCC, spanCC *grpc.ClientConn
	background              []func() // closes the held-open streams, in order
}

// dialOptions are what the agents use: plaintext, and keepalive pings every 30 s even
// without streams (so a collector with grpc-go's default policy would GOAWAY them).
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(4<<20), grpc.MaxCallRecvMsgSize(4<<20)),
	}
}

func (a *agent) dial(cfg *Config) error {
	var err error
	opts := dialOptions()
	if a.agentCC, err = grpc.NewClient(cfg.AgentAddr, opts...); err != nil {
		return fmt.Errorf("agent %s: dial %s: %w", a.id.ID, cfg.AgentAddr, err)
	}
	if a.statCC, err = grpc.NewClient(cfg.statAddr(), opts...); err != nil {
		return fmt.Errorf("agent %s: dial %s: %w", a.id.ID, cfg.statAddr(), err)
	}
	if a.spanCC, err = grpc.NewClient(cfg.spanAddr(), opts...); err != nil {
		return fmt.Errorf("agent %s: dial %s: %w", a.id.ID, cfg.spanAddr(), err)
	}
	return nil
}

// close ends the held streams, then the connections. It is idempotent.
func (a *agent) close() {
	for _, stop := range a.background {
		stop()
	}
	a.background = nil
	for _, cc := range []*grpc.ClientConn{a.agentCC, a.statCC, a.spanCC} {
		if cc != nil {
			cc.Close()
		}
	}
	a.agentCC, a.statCC, a.spanCC = nil, nil, nil
}

// ctx carries the headers every call of the agent sends.
func (a *agent) ctx(parent context.Context) context.Context {
	return metadata.NewOutgoingContext(parent, metadata.Pairs(
		"agentid", a.id.ID,
		"applicationname", a.id.Role.App(),
		"agentname", a.id.Name,
		"starttime", strconv.FormatInt(a.id.StartTime, 10),
		"servicetype", "1010",
	))
}

// handshake does what an agent does before its first span: register (RequestAgentInfo),
// send the metadata its spans reference, open the ping and command streams.
func (a *agent) handshake(ctx context.Context, cfg *Config) error {
	if err := a.register(ctx); err != nil {
		return err
	}
	if err := a.sendMetadata(ctx); err != nil {
		return err
	}
	if err := a.startPing(ctx, cfg.PingEvery); err != nil {
		return err
	}
	if err := a.startCommand(ctx); err != nil {
		return err
	}
	// Connect the span and stat channels now, so the timed part of the run does not
	// include connection set-up (real agents open them at start as well).
	for _, cc := range []*grpc.ClientConn{a.spanCC, a.statCC} {
		if err := waitReady(ctx, cc); err != nil {
			return fmt.Errorf("agent %s: connect %s: %w", a.id.ID, cc.Target(), err)
		}
	}
	return nil
}

// waitReady connects cc and waits until it is ready, for at most 10 s.
func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("still %s: %w", s, ctx.Err())
		}
	}
}

// register sends PAgentInfo; Java retries every 3 s until the collector answers, ppload
// retries a few times so a collector still binding its port does not fail the run.
func (a *agent) register(ctx context.Context) error {
	client := pb.NewAgentClient(a.agentCC)
	var err error
	for attempt := range 5 {
		var res *pb.PResult
		if res, err = client.RequestAgentInfo(a.ctx(ctx), agentInfo(a.id)); err == nil {
			if !res.GetSuccess() {
				return fmt.Errorf("agent %s: RequestAgentInfo answered success=false: %s", a.id.ID, res.GetMessage())
			}
			a.rec.count(msgAgentInfo, 1)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	a.rec.fail(err, 0)
	return fmt.Errorf("agent %s: RequestAgentInfo: %w", a.id.ID, err)
}

func agentInfo(id gen.Agent) *pb.PAgentInfo {
	return &pb.PAgentInfo{
		Hostname: id.Role.App() + "-" + id.ID, Ip: "10.0.0.7", Ports: "8080", ServiceType: 1010,
		Pid: 4242, AgentVersion: "3.0.1", VmVersion: "17.0.9",
		ServerMetaData: &pb.PServerMetaData{ServerInfo: "Apache Tomcat/9.0.83", VmArg: []string{"-Xmx1g", "-XX:+UseG1GC"}},
		JvmInfo:        &pb.PJvmInfo{Version: 0, VmVersion: "17.0.9", GcType: pb.PJvmGcType_JVM_GC_TYPE_G1},
	}
}

// sendMetadata sends the agent's whole catalog before any span references it.
func (a *agent) sendMetadata(ctx context.Context) error {
	client := pb.NewMetadataClient(a.agentCC)
	cat := gen.CatalogFor(a.id.Role)
	call := func(name string, send func() (*pb.PResult, error)) error {
		res, err := send()
		if err == nil && !res.GetSuccess() {
			err = errors.New("success=false: " + res.GetMessage())
		}
		if err != nil {
			a.rec.fail(err, 0)
			return fmt.Errorf("agent %s: %s: %w", a.id.ID, name, err)
		}
		a.rec.count(name, 1)
		return nil
	}
	mctx := a.ctx(ctx)
	for _, m := range cat.APIs {
		if err := call(msgAPIMeta, func() (*pb.PResult, error) { return client.RequestApiMetaData(mctx, m) }); err != nil {
			return err
		}
	}
	for _, m := range cat.SQLs {
		if err := call(msgSQLMeta, func() (*pb.PResult, error) { return client.RequestSqlMetaData(mctx, m) }); err != nil {
			return err
		}
	}
	for _, m := range cat.Strings {
		if err := call(msgStringMeta, func() (*pb.PResult, error) { return client.RequestStringMetaData(mctx, m) }); err != nil {
			return err
		}
	}
	return nil
}

// startPing opens the PingSession, waits for the answer to the first PPing (the Go agent
// gives up on a stream unanswered in 5 s) and pings every `every` until the run ends.
func (a *agent) startPing(ctx context.Context, every time.Duration) error {
	sctx, cancel := context.WithCancel(a.ctx(ctx))
	sctx = metadata.AppendToOutgoingContext(sctx, "socketid", "1")
	stream, err := pb.NewAgentClient(a.agentCC).PingSession(sctx)
	if err == nil {
		err = a.ping(stream)
	}
	if err != nil {
		cancel()
		a.rec.fail(err, 0)
		return fmt.Errorf("agent %s: PingSession: %w", a.id.ID, err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				_ = stream.CloseSend()
				_, _ = stream.Recv() // io.EOF once the collector ends the session
				return
			case <-t.C:
				if err := a.ping(stream); err != nil {
					a.rec.fail(err, 0)
					<-stop
					return
				}
			}
		}
	}()
	a.background = append(a.background, func() {
		close(stop)
		endStream(done, cancel)
	})
	return nil
}

// endStream waits a moment for a half-closed stream to be ended by the collector, then
// cancels it: a collector that holds it is not ppload's problem at exit.
func endStream(done <-chan struct{}, cancel context.CancelFunc) {
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	cancel()
	<-done
}

func (a *agent) ping(stream grpc.BidiStreamingClient[pb.PPing, pb.PPing]) error {
	if err := stream.Send(&pb.PPing{}); err != nil {
		return err
	}
	a.rec.count(msgPing, 1)
	_, err := stream.Recv()
	return err
}

// startCommand opens HandleCommand with the handshake Java sends and holds it open; the
// collector sends no commands, so the reader only waits for the stream to end.
func (a *agent) startCommand(ctx context.Context) error {
	sctx, cancel := context.WithCancel(a.ctx(ctx))
	stream, err := pb.NewProfilerCommandServiceClient(a.agentCC).HandleCommand(sctx)
	if err == nil {
		err = stream.Send(&pb.PCmdMessage{Message: &pb.PCmdMessage_HandshakeMessage{
			HandshakeMessage: &pb.PCmdServiceHandshake{SupportCommandServiceKey: []int32{710, 730, 740, 750}},
		}})
	}
	if err != nil {
		cancel()
		a.rec.fail(err, 0)
		return fmt.Errorf("agent %s: HandleCommand: %w", a.id.ID, err)
	}
	a.rec.count(msgCmdHandshake, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := stream.Recv(); err != nil {
				if !errors.Is(err, io.EOF) && sctx.Err() == nil {
					a.rec.fail(err, 0)
				}
				return
			}
		}
	}()
	a.background = append(a.background, func() {
		_ = stream.CloseSend()
		endStream(done, cancel)
	})
	return nil
}
