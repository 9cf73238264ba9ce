package pinpoint

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Stopping, the input first drains the calls that carry data (the Span and Stat services)
// while the Agent and Metadata services keep answering: a span accepted in the last
// moments can still have its metadata come in, and the assembler keeps what still waits
// for metadata in the store for the next process. New data calls are refused with
// UNAVAILABLE, which agents treat as "reconnect" (to the next apmkit); open data streams
// end after the message in hand. Only when they are all done does the server stop.

// errStopping answers data calls once the drain began.
var errStopping = status.Error(codes.Unavailable, "pinpoint: apmkit is stopping; reconnect")

// drainGate admits data calls until the drain begins, and tells when the last one is done.
type drainGate struct {
	mu     sync.Mutex
	active int
	closed bool
	stop   chan struct{} // closed when the drain begins
	idle   chan struct{} // closed when the drain began and no data call is left
}

func newDrainGate() *drainGate {
	return &drainGate{stop: make(chan struct{}), idle: make(chan struct{})}
}

// enter admits a data call; false once the drain began. Every true is paired with leave.
func (g *drainGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active++
	return true
}

func (g *drainGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.closed && g.active == 0 {
		close(g.idle)
	}
}

// drain begins the drain (idempotent).
func (g *drainGate) drain() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.closed = true
	close(g.stop)
	if g.active == 0 {
		close(g.idle)
	}
}

// draining is closed when the drain begins.
func (g *drainGate) draining() <-chan struct{} { return g.stop }

// wait waits for the data calls to finish, at most until ctx ends.
func (g *drainGate) wait(ctx context.Context) error {
	select {
	case <-g.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// admitData is the start of every Span and Stat handler: it refuses the call once the
// drain began (counted), else returns the function that ends the call.
func (in *Input) admitData(ctx context.Context) (func(), error) {
	if !in.data.enter() {
		in.counters.reject(senderFrom(ctx), reasonStopping)
		return nil, errStopping
	}
	return in.data.leave, nil
}

// dataReadAhead is how many decoded messages a data stream's reader may keep ready for
// the handler: enough that the two goroutines do not wait for each other on every
// message, few enough that a stream holds little memory.
const dataReadAhead = 2

// received is one message a data stream's reader got.
type received[M any] struct {
	msg       M
	decodeErr error // the message did not decode (counted, skipped)
	err       error // RecvMsg failed or the client half-closed (io.EOF): the end
}

// recvData is recvLoop for the long-lived data streams (SendSpan, SendAgentStat): it also
// ends when the drain begins, once the messages received already are handled, with
// UNAVAILABLE. grpc-go cannot interrupt RecvMsg but by ending the call, so a reader
// goroutine receives (and decodes, into a fresh newMsg() each) ahead of the handler; it
// ends when the call does.
func recvData[M proto.Message](in *Input, stream grpc.ServerStream, newMsg func() M, handle func(ctx context.Context, m M)) error {
	ch := make(chan received[M], dataReadAhead)
	done := make(chan struct{})
	defer close(done)
	method, _ := grpc.MethodFromServerStream(stream)
	in.readers.Add(1)
	go func() {
		defer in.readers.Done()
		for {
			m := newMsg()
			f := protoFrame(m)
			err := in.recvGuarded(method, stream, f)
			select {
			case ch <- received[M]{msg: m, decodeErr: f.err, err: err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	ctx := stream.Context()
	take := func(r received[M]) (bool, error) {
		switch {
		case errors.Is(r.err, io.EOF):
			return true, nil
		case r.err != nil:
			return true, r.err // transport gone, too large, cancelled: grpc reports the status
		case r.decodeErr != nil:
			in.counters.reject(senderFrom(ctx), reasonDecode)
		default:
			handle(ctx, r.msg)
		}
		return false, nil
	}
	for {
		select {
		case r := <-ch:
			if end, err := take(r); end {
				return err
			}
		case <-in.data.draining():
			for n := len(ch); n > 0; n-- { // what was received already is handled, not dropped
				if end, err := take(<-ch); end {
					return err
				}
			}
			return errStopping
		}
	}
}

// recvGuarded is RecvMsg on a goroutine of its own: a panic while decoding is recovered
// and ends the call with INTERNAL, as the interceptors do for handlers.
func (in *Input) recvGuarded(method string, stream grpc.ServerStream, f *frame) (err error) {
	defer in.recoverPanic(method, &err)
	return stream.RecvMsg(f)
}

// handleFrame hands on one received message, or counts it when it did not decode (recvLoop).
func (in *Input) handleFrame(ctx context.Context, f *frame, handle func(ctx context.Context)) {
	if f.err != nil {
		in.counters.reject(senderFrom(ctx), reasonDecode)
		return
	}
	handle(ctx)
}
