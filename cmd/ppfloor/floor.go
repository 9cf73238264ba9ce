package main

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// floor serves every Pinpoint service with grpc-go and the generated types and does
// nothing but decode (grpc-go's proto codec) and count: the cost of receiving Pinpoint
// traffic at all, which apmkit's full path is compared with.
type floor struct {
	pb.UnimplementedAgentServer
	pb.UnimplementedMetadataServer
	pb.UnimplementedSpanServer
	pb.UnimplementedStatServer
	pb.UnimplementedProfilerCommandServiceServer

	agentInfo, pings, apiMeta, sqlMeta, stringMeta, cmd atomic.Int64
	batches, spanMessages, spans, chunks, events        atomic.Int64
	statMessages                                        atomic.Int64
}

// Counts is what ppfloor prints at exit; the keys are apmkit's message names plus the
// event total.
type Counts struct {
	Messages map[string]int64 `json:"messages"`
	Events   int64            `json:"events"`
}

func (f *floor) counts() Counts {
	m := map[string]int64{}
	for k, v := range map[string]*atomic.Int64{
		"PAgentInfo": &f.agentInfo, "PPing": &f.pings, "PApiMetaData": &f.apiMeta, "PSqlMetaData": &f.sqlMeta,
		"PStringMetaData": &f.stringMeta, "PCmdMessage": &f.cmd, "PSpanMessageBatch": &f.batches,
		"PSpanMessage": &f.spanMessages, "PSpan": &f.spans, "PSpanChunk": &f.chunks, "PStatMessage": &f.statMessages,
	} {
		if n := v.Load(); n > 0 {
			m[k] = n
		}
	}
	return Counts{Messages: m, Events: f.events.Load()}
}

// newServer has the options that matter for agents, as apmkit sets them: Pinpoint's 4 MiB
// message limit and a keepalive policy that lets agents ping every 30 s.
func newServer(f *floor) *grpc.Server {
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(4<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	pb.RegisterAgentServer(srv, f)
	pb.RegisterMetadataServer(srv, f)
	pb.RegisterSpanServer(srv, f)
	pb.RegisterStatServer(srv, f)
	pb.RegisterProfilerCommandServiceServer(srv, f)
	return srv
}

// success is a fresh answer per call rather than a shared package variable.
func success() *pb.PResult { return &pb.PResult{Success: true} }

func (f *floor) RequestAgentInfo(context.Context, *pb.PAgentInfo) (*pb.PResult, error) {
	f.agentInfo.Add(1)
	return success(), nil
}

func (f *floor) PingSession(s grpc.BidiStreamingServer[pb.PPing, pb.PPing]) error {
	for {
		if _, err := s.Recv(); err != nil {
			return endOfStream(err)
		}
		f.pings.Add(1)
		if err := s.Send(&pb.PPing{}); err != nil {
			return err
		}
	}
}

func (f *floor) RequestApiMetaData(context.Context, *pb.PApiMetaData) (*pb.PResult, error) {
	f.apiMeta.Add(1)
	return success(), nil
}

func (f *floor) RequestSqlMetaData(context.Context, *pb.PSqlMetaData) (*pb.PResult, error) {
	f.sqlMeta.Add(1)
	return success(), nil
}

func (f *floor) RequestStringMetaData(context.Context, *pb.PStringMetaData) (*pb.PResult, error) {
	f.stringMeta.Add(1)
	return success(), nil
}

func (f *floor) SendSpan(s grpc.ClientStreamingServer[pb.PSpanMessage, emptypb.Empty]) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&emptypb.Empty{})
		}
		if err != nil {
			return err
		}
		f.span(m)
	}
}

func (f *floor) SendSpanBatch(_ context.Context, b *pb.PSpanMessageBatch) (*pb.PSpanResultBatch, error) {
	f.batches.Add(1)
	for _, m := range b.GetSpan() {
		f.span(m)
	}
	return &pb.PSpanResultBatch{}, nil
}

func (f *floor) span(m *pb.PSpanMessage) {
	f.spanMessages.Add(1)
	if s := m.GetSpan(); s != nil {
		f.spans.Add(1)
		f.events.Add(int64(len(s.GetSpanEvent())))
	}
	if c := m.GetSpanChunk(); c != nil {
		f.chunks.Add(1)
		f.events.Add(int64(len(c.GetSpanEvent())))
	}
}

func (f *floor) SendAgentStat(s grpc.ClientStreamingServer[pb.PStatMessage, emptypb.Empty]) error {
	for {
		_, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&emptypb.Empty{})
		}
		if err != nil {
			return err
		}
		f.statMessages.Add(1)
	}
}

// HandleCommand holds the stream open and sends nothing, as Pinpoint's empty command
// service does.
func (f *floor) HandleCommand(s grpc.BidiStreamingServer[pb.PCmdMessage, pb.PCmdRequest]) error {
	for {
		if _, err := s.Recv(); err != nil {
			return endOfStream(err)
		}
		f.cmd.Add(1)
	}
}

func (f *floor) HandleCommandV2(s grpc.BidiStreamingServer[pb.PCmdMessage, pb.PCmdRequest]) error {
	return f.HandleCommand(s)
}

// endOfStream turns the client's half-close into a normal end of the call.
func endOfStream(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
