package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Raw is a message as bytes; RawCodec sends and receives it unchanged.
type Raw []byte

// RawCodec is a pass-through gRPC codec for Raw messages.
type RawCodec struct{}

// Name is "proto" so the collector sees the content type real agents send.
func (RawCodec) Name() string { return "proto" }

// Marshal returns the bytes of a *Raw.
func (RawCodec) Marshal(v any) ([]byte, error) {
	r, ok := v.(*Raw)
	if !ok {
		return nil, fmt.Errorf("raw codec: %T", v)
	}
	return *r, nil
}

// Unmarshal copies the bytes into a *Raw.
func (RawCodec) Unmarshal(data []byte, v any) error {
	r, ok := v.(*Raw)
	if !ok {
		return fmt.Errorf("raw codec: %T", v)
	}
	*r = append((*r)[:0], data...)
	return nil
}

// Targets says where each port role goes: agent (Agent, Metadata, Command), stat, span.
// Empty stat/span use the agent address.
type Targets struct {
	Agent, Stat, Span string
	// DialOptions are added to every connection (e.g. TLS).
	DialOptions []grpc.DialOption
}

func (t Targets) addr(method string) (role, addr string) {
	switch {
	case strings.HasPrefix(method, "/v1.Stat/") && t.Stat != "":
		return "stat", t.Stat
	case strings.HasPrefix(method, "/v1.Span/") && t.Span != "":
		return "span", t.Span
	}
	return "agent", t.Agent
}

// Result is what a replay saw.
type Result struct {
	Calls int
	// Failed lists the calls that did not end OK (method: error).
	Failed []string
	// Replies are the reply bytes of every unary call and client stream, by method.
	Replies map[string][]Raw
}

// Replay sends every event of the recording in seq order, as fast as the collector
// answers, with one connection per agent run and port role.
func (r *Recording) Replay(ctx context.Context, t Targets) (*Result, error) {
	p := &player{t: t, conns: map[string]*grpc.ClientConn{}, streams: map[string]*openStream{},
		res: &Result{Replies: map[string][]Raw{}}}
	defer p.close()
	for _, ev := range r.Events {
		if err := p.play(ctx, ev); err != nil {
			return p.res, fmt.Errorf("replay %s seq %d: %w", r.Name, ev.Seq, err)
		}
	}
	return p.res, nil
}

type openStream struct {
	method  string
	kind    string
	headers map[string]string
	stream  grpc.ClientStream
	cancel  context.CancelFunc
}

type player struct {
	t       Targets
	conns   map[string]*grpc.ClientConn
	streams map[string]*openStream
	res     *Result
}

func (p *player) conn(ev Event, headers map[string]string) (*grpc.ClientConn, error) {
	role, addr := p.t.addr(ev.Method)
	key := headers["agentid"] + "^" + headers["starttime"] + "/" + role
	if c, ok := p.conns[key]; ok {
		return c, nil
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, p.t.DialOptions...)
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	p.conns[key] = c
	return c, nil
}

func (p *player) play(ctx context.Context, ev Event) error {
	switch ev.Event {
	case "open":
		p.streams[ev.Stream] = &openStream{method: ev.Method, kind: ev.Kind, headers: ev.Headers}
		if ev.Kind == "unary" {
			return nil
		}
		return p.openStream(ctx, ev)
	case "msg":
		return p.send(ctx, ev)
	case "close":
		return p.closeStream(ev)
	}
	return fmt.Errorf("unknown event %q", ev.Event)
}

func (p *player) openStream(ctx context.Context, ev Event) error {
	s := p.streams[ev.Stream]
	c, err := p.conn(ev, s.headers)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, metadata.New(s.headers)))
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: ev.Kind == "bidi"}
	cs, err := c.NewStream(sctx, desc, ev.Method, grpc.ForceCodec(RawCodec{}))
	if err != nil {
		cancel()
		return err
	}
	s.stream, s.cancel = cs, cancel
	return nil
}

func (p *player) send(ctx context.Context, ev Event) error {
	s, ok := p.streams[ev.Stream]
	if !ok {
		return fmt.Errorf("msg on unopened stream %s", ev.Stream)
	}
	msg, err := ev.Bytes()
	if err != nil {
		return err
	}
	raw := Raw(msg)
	if s.kind != "unary" {
		return s.stream.SendMsg(&raw)
	}
	c, err := p.conn(ev, s.headers)
	if err != nil {
		return err
	}
	var reply Raw
	p.res.Calls++
	err = c.Invoke(metadata.NewOutgoingContext(ctx, metadata.New(s.headers)), ev.Method, &raw, &reply, grpc.ForceCodec(RawCodec{}))
	if err != nil {
		p.res.Failed = append(p.res.Failed, ev.Method+": "+err.Error())
		return nil
	}
	p.res.Replies[ev.Method] = append(p.res.Replies[ev.Method], reply)
	return nil
}

// closeStream half-closes a stream and reads the collector's answer to the end.
func (p *player) closeStream(ev Event) error {
	s, ok := p.streams[ev.Stream]
	delete(p.streams, ev.Stream)
	if !ok || s.kind == "unary" {
		return nil
	}
	defer s.cancel()
	p.res.Calls++
	if err := s.stream.CloseSend(); err != nil {
		p.res.Failed = append(p.res.Failed, s.method+": close: "+err.Error())
		return nil
	}
	for {
		var reply Raw
		err := s.stream.RecvMsg(&reply)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			p.res.Failed = append(p.res.Failed, s.method+": "+err.Error())
			return nil
		}
		p.res.Replies[s.method] = append(p.res.Replies[s.method], reply)
		if s.kind == "client_stream" {
			return nil
		}
	}
}

func (p *player) close() {
	for _, s := range p.streams {
		if s.cancel != nil {
			s.cancel()
		}
	}
	for _, c := range p.conns {
		c.Close()
	}
}
