// Package faulttest holds apmkit's fault tests: they run the real apmkit binary as a
// subprocess, break what is around it (the output goes down, is slow or too small; the
// process gets SIGTERM or SIGKILL; agents churn; garbage reaches the gRPC port) and check
// at a local DataWay sink, span id by span id, that nothing accepted is lost or doubled.
//
// The non-test part of the package is the emulated agent the tests and the ppchurn helper
// share. It lives under cmd/ppload so it can build on ppload's span generator, and unlike
// ppload it remembers which spans each SendSpanBatch answer acknowledged, so a test can
// compare ids rather than counts.
package faulttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// EntryID names one entry span as apmkit writes it (docs/SCHEMA.md): trace_id is
// agentId^agentStartTime^sequence, span_id the Pinpoint spanId in decimal.
type EntryID struct {
	Trace string `json:"trace_id"`
	Span  string `json:"span_id"`
}

func (e EntryID) String() string { return e.Trace + "/" + e.Span }

// entryIDOf is the id of the entry span apmkit makes of span, sent by agent self. An empty
// transaction agent id means the sender started the transaction, as apmkit reads it.
func entryIDOf(self gen.Agent, span *pb.PSpan) EntryID {
	tx := span.GetTransactionId()
	agent, start := tx.GetAgentId(), tx.GetAgentStartTime()
	if agent == "" {
		agent = self.ID
		if start == 0 {
			start = self.StartTime
		}
	}
	return EntryID{
		Trace: agent + "^" + strconv.FormatInt(start, 10) + "^" + strconv.FormatInt(tx.GetSequence(), 10),
		Span:  strconv.FormatInt(span.GetSpanId(), 10),
	}
}

// Ledger is what the collector answered: the entry spans it acknowledged (per agent, in
// the order of the answers), those whose fate is unknown (the call failed, or a
// partial_success answer rejected some spans of the batch without saying which), and the
// errors. Safe for concurrent use.
type Ledger struct {
	mu       sync.Mutex
	acked    map[string][]EntryID // agent id -> acknowledged entry spans, in answer order
	unknown  []EntryID
	batches  int64
	failed   int64 // SendSpanBatch calls that returned an error
	rejected int64 // spans a partial_success answer rejected
	pings    int64 // pings answered
	errors   map[string]int64
	firstErr map[string]string
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{acked: map[string][]EntryID{}, errors: map[string]int64{}, firstErr: map[string]string{}}
}

func (l *Ledger) ack(agent string, ids []EntryID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches++
	l.acked[agent] = append(l.acked[agent], ids...)
}

func (l *Ledger) lose(ids []EntryID, rejected int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches++
	l.unknown = append(l.unknown, ids...)
	l.rejected += rejected
	if err != nil {
		l.failed++
		l.noteLocked(err)
	}
}

func (l *Ledger) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noteLocked(err)
}

func (l *Ledger) noteLocked(err error) {
	code := status.Code(err).String()
	if errors.Is(err, io.EOF) {
		code = "EOF"
	}
	l.errors[code]++
	if _, seen := l.firstErr[code]; !seen {
		l.firstErr[code] = err.Error()
	}
}

func (l *Ledger) pinged() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pings++
}

// Snapshot is a copy of a ledger's content.
type Snapshot struct {
	Acked    map[string][]EntryID `json:"acked"`
	Unknown  []EntryID            `json:"unknown"`
	Batches  int64                `json:"batches"`
	Failed   int64                `json:"failed"`
	Rejected int64                `json:"rejected"`
	Pings    int64                `json:"pings"`
	Errors   map[string]int64     `json:"errors"`
	FirstErr map[string]string    `json:"first_errors"`
}

// Snapshot copies the ledger.
func (l *Ledger) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Snapshot{
		Acked: map[string][]EntryID{}, Unknown: append([]EntryID(nil), l.unknown...),
		Batches: l.batches, Failed: l.failed, Rejected: l.rejected, Pings: l.pings,
		Errors: map[string]int64{}, FirstErr: map[string]string{},
	}
	for k, v := range l.acked {
		s.Acked[k] = append([]EntryID(nil), v...)
	}
	for k, v := range l.errors {
		s.Errors[k] = v
	}
	for k, v := range l.firstErr {
		s.FirstErr[k] = v
	}
	return s
}

// AckedSet is every acknowledged entry span once, with how often it was acknowledged
// (more than once would be a bug in the emulation, not in apmkit).
func (s Snapshot) AckedSet() map[EntryID]int {
	set := map[EntryID]int{}
	for _, ids := range s.Acked {
		for _, id := range ids {
			set[id]++
		}
	}
	return set
}

// AckedCount is the number of acknowledged entry spans.
func (s Snapshot) AckedCount() int {
	n := 0
	for _, ids := range s.Acked {
		n += len(ids)
	}
	return n
}

// Agent is one emulated Pinpoint agent run on one connection (apmkit serves every service
// on each of its ports, so one is enough). Its calls are made one at a time by its owner,
// except the ping session, which runs on its own goroutine.
type Agent struct {
	ID       gen.Agent
	cc       *grpc.ClientConn
	ledger   *Ledger
	deadline time.Duration

	pingStop chan struct{}
	pingDone chan struct{}
	pingErr  error // set before pingDone closes
}

// DialAgent creates the agent's connection (grpc connects lazily, on the first call).
// deadline bounds each call.
func DialAgent(addr string, id gen.Agent, ledger *Ledger, deadline time.Duration) (*Agent, error) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(4<<20), grpc.MaxCallRecvMsgSize(4<<20)))
	if err != nil {
		return nil, fmt.Errorf("agent %s: dial %s: %w", id.ID, addr, err)
	}
	return &Agent{ID: id, cc: cc, ledger: ledger, deadline: deadline}, nil
}

// ctx carries the headers every call of a Pinpoint agent sends.
func (a *Agent) ctx(parent context.Context) context.Context {
	return metadata.NewOutgoingContext(parent, metadata.Pairs(
		"agentid", a.ID.ID,
		"applicationname", a.ID.Role.App(),
		"agentname", a.ID.Name,
		"starttime", strconv.FormatInt(a.ID.StartTime, 10),
		"servicetype", "1010",
	))
}

// Handshake registers the agent run and sends the metadata its spans refer to, as an
// agent does before its first span. A refused connection is retried for a few seconds, the
// way agents retry until the collector is up.
func (a *Agent) Handshake(ctx context.Context) error {
	info := &pb.PAgentInfo{
		Hostname: a.ID.Name, Ip: "10.0.0.7", Ports: "8080", ServiceType: 1010, Pid: 4242,
		AgentVersion: "3.0.1", VmVersion: "17.0.9",
		JvmInfo: &pb.PJvmInfo{VmVersion: "17.0.9", GcType: pb.PJvmGcType_JVM_GC_TYPE_G1},
	}
	var err error
	for attempt := range 10 {
		if err = a.unary(ctx, "RequestAgentInfo", func(ctx context.Context) (*pb.PResult, error) {
			return pb.NewAgentClient(a.cc).RequestAgentInfo(ctx, info)
		}); err == nil || status.Code(err) != codes.Unavailable {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	client := pb.NewMetadataClient(a.cc)
	cat := gen.CatalogFor(a.ID.Role)
	for _, m := range cat.APIs {
		if err := a.unary(ctx, "RequestApiMetaData", func(ctx context.Context) (*pb.PResult, error) { return client.RequestApiMetaData(ctx, m) }); err != nil {
			return err
		}
	}
	for _, m := range cat.SQLs {
		if err := a.unary(ctx, "RequestSqlMetaData", func(ctx context.Context) (*pb.PResult, error) { return client.RequestSqlMetaData(ctx, m) }); err != nil {
			return err
		}
	}
	for _, m := range cat.Strings {
		if err := a.unary(ctx, "RequestStringMetaData", func(ctx context.Context) (*pb.PResult, error) { return client.RequestStringMetaData(ctx, m) }); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) unary(ctx context.Context, name string, call func(context.Context) (*pb.PResult, error)) error {
	cctx, cancel := context.WithTimeout(a.ctx(ctx), a.deadline)
	defer cancel()
	res, err := call(cctx)
	if err == nil && !res.GetSuccess() {
		err = errors.New("success=false: " + res.GetMessage())
	}
	if err != nil {
		a.ledger.fail(err)
		return fmt.Errorf("agent %s: %s: %w", a.ID.ID, name, err)
	}
	return nil
}

// OpenPing opens the PingSession and waits for the answer to a first PPing, then pings
// every `every` on the same stream until ClosePing. Every ping must be answered on that
// one stream: a failure ends the session and is kept for PingErr.
func (a *Agent) OpenPing(ctx context.Context, every time.Duration) error {
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(a.ctx(ctx), "socketid", "1"))
	stream, err := pb.NewAgentClient(a.cc).PingSession(sctx)
	if err == nil {
		err = a.pingOnce(stream)
	}
	if err != nil {
		cancel()
		a.ledger.fail(err)
		return fmt.Errorf("agent %s: PingSession: %w", a.ID.ID, err)
	}
	a.pingStop, a.pingDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(a.pingDone)
		defer cancel()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-a.pingStop:
				_ = stream.CloseSend()
				// The collector ends the session once the agent half-closes; anything but
				// a clean end is a stream error.
				if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
					a.pingErr = fmt.Errorf("ping session end: %w", err)
					a.ledger.fail(err)
				}
				return
			case <-t.C:
				if err := a.pingOnce(stream); err != nil {
					a.pingErr = err
					a.ledger.fail(err)
					<-a.pingStop
					return
				}
			}
		}
	}()
	return nil
}

func (a *Agent) pingOnce(stream grpc.BidiStreamingClient[pb.PPing, pb.PPing]) error {
	if err := stream.Send(&pb.PPing{}); err != nil {
		if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr // Send says io.EOF; the status is on Recv
		}
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	a.ledger.pinged()
	return nil
}

// ClosePing ends the ping session and returns its first error, if any.
func (a *Agent) ClosePing() error {
	if a.pingStop == nil {
		return nil
	}
	close(a.pingStop)
	<-a.pingDone
	a.pingStop = nil
	return a.pingErr
}

// SendBatch sends one SendSpanBatch and records its answer in the ledger: an empty answer
// acknowledges every span of the batch; a partial_success or an error makes the batch's
// spans unknown (apmkit may or may not have taken them).
func (a *Agent) SendBatch(ctx context.Context, msgs []*pb.PSpanMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	var ids []EntryID
	for _, m := range msgs {
		if s := m.GetSpan(); s != nil {
			ids = append(ids, entryIDOf(a.ID, s))
		}
	}
	cctx, cancel := context.WithTimeout(a.ctx(ctx), a.deadline)
	defer cancel()
	res, err := pb.NewSpanClient(a.cc).SendSpanBatch(cctx, &pb.PSpanMessageBatch{Span: msgs})
	switch {
	case err != nil:
		a.ledger.lose(ids, 0, err)
		return fmt.Errorf("agent %s: SendSpanBatch: %w", a.ID.ID, err)
	case res.GetPartialSuccess() != nil:
		ps := res.GetPartialSuccess()
		a.ledger.lose(ids, ps.GetRejectedSpans(), nil)
		return fmt.Errorf("agent %s: SendSpanBatch: %d spans rejected: %s", a.ID.ID, ps.GetRejectedSpans(), ps.GetErrorMessage())
	}
	a.ledger.ack(a.ID.ID, ids)
	return nil
}

// Close ends the ping session and the connection.
func (a *Agent) Close() {
	_ = a.ClosePing()
	_ = a.cc.Close()
}
