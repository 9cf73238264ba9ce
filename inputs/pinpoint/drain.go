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
	held      int64 // charged to the receive budget; released once msg is handled
	decodeErr error // the message did not decode (counted, skipped)
	admitErr  error // the receive budget refused the message (not decoded)
	err       error // RecvMsg failed or the client half-closed (io.EOF): the end
}

// recvData is recvLoop for the long-lived data streams (SendSpan, SendAgentStat): it also
// ends when the drain begins, once the messages received already are handled, with
// UNAVAILABLE. grpc-go cannot interrupt RecvMsg but by ending the call, so a reader
// goroutine receives (and decodes, into a fresh newMsg() each) ahead of the handler; it
// ends when the call does. Each message is admitted against the receive budget before it
// is decoded (the reader waits there, and gRPC flow control holds the agent back), and
// its charge is released once the handler handed it on.
func recvData[M proto.Message](in *Input, stream grpc.ServerStream, newMsg func() M, handle func(ctx context.Context, m M)) error {
	ch := make(chan received[M], dataReadAhead)
	done := make(chan struct{})
	defer close(done)
	full, _ := grpc.MethodFromServerStream(stream)
	method := methodName(stream)
	ctx := stream.Context()
	admit := in.admitter(ctx, classData, true, nil)
	in.readers.Add(1)
	go func() {
		defer in.readers.Done()
		defer func() {
			// Once the handler is gone nobody takes what is still queued: release it.
			<-done
			for {
				select {
				case r := <-ch:
					in.budget.release(r.held)
				default:
					return
				}
			}
		}()
		for {
			m := newMsg()
			f := protoFrame(m)
			f.admit = admit
			err := in.recvGuarded(full, stream, f)
			r := received[M]{msg: m, held: f.held, decodeErr: f.err, admitErr: f.admitErr, err: err}
			if err != nil || f.admitErr != nil || f.err != nil {
				var zero M
				r.msg = zero // nothing to hand on: do not keep it
			}
			select {
			case ch <- r:
			case <-done:
				in.budget.release(r.held)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	take := func(r received[M]) (bool, error) {
		defer in.budget.release(r.held)
		switch {
		case errors.Is(r.err, io.EOF):
			return true, nil
		case r.err != nil:
			return true, r.err // transport gone, too large, cancelled: grpc reports the status
		case r.admitErr != nil:
			if err := in.streamAdmission(ctx, r.admitErr); err != nil {
				return true, err
			}
		case r.decodeErr != nil:
			in.malformed(method, decodeReason(r.decodeErr))
			in.counters.reject(senderFrom(ctx), reasonDecode)
		default:
			in.touch(ctx)
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

// touch marks the call's agent run as seen, so its metadata stays in the cache while it
// sends on a long-lived stream (the interceptors mark it at the start of each call).
func (in *Input) touch(ctx context.Context) {
	if s := senderFrom(ctx); s != nil && in.meta != nil {
		in.meta.Touch(s.AgentKey)
	}
}

// handleFrame hands on one received message, or counts it when it did not decode (recvLoop).
func (in *Input) handleFrame(ctx context.Context, method string, f *frame, handle func(ctx context.Context)) {
	if f.err != nil {
		in.malformed(method, decodeReason(f.err))
		in.counters.reject(senderFrom(ctx), reasonDecode)
		return
	}
	in.touch(ctx)
	handle(ctx)
}
