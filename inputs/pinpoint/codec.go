package pinpoint

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// codec is the server's only codec. Requests are received into a frame whose decode runs
// on the message bytes: a message that does not decode is recorded in the frame instead of
// failing RecvMsg, because grpc-go ends the whole stream when RecvMsg fails, and one bad
// message must never cost an agent its stream.
//
// The codec is also where the receive budget admits a message: gRPC has read it whole by
// then, nothing is decoded yet. A frame with an admit function is charged (and may wait)
// before its bytes are decoded; a refusal is recorded in the frame, like a decode error,
// and the handler answers it.
type codec struct{}

// frame receives one request message.
type frame struct {
	decode func(b []byte) error
	// desc is the message type the bytes are, for the admission's estimate.
	desc protoreflect.MessageDescriptor
	// admit charges the receive budget cost bytes for a message of raw received bytes
	// (and may wait); nil admits everything.
	admit func(cost, raw int64) (int64, error)

	size     int
	held     int64 // charged by admit: the handler releases it once the content is handed on
	err      error // the message did not decode
	admitErr error // the message was not admitted, so not decoded
}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("pinpoint codec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *frame:
		m.size, m.held, m.err, m.admitErr = data.Len(), 0, nil, nil
		if m.admit != nil {
			if m.admitErr = m.admitFrame(data); m.admitErr != nil {
				return nil
			}
		}
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		m.err = m.decode(buf.ReadOnlyData()) // decoders copy what they keep; the bytes return to the pool
		return nil
	case proto.Message:
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		return proto.Unmarshal(buf.ReadOnlyData(), m)
	}
	return fmt.Errorf("pinpoint codec: cannot unmarshal into %T", v)
}

// admitFrame estimates what the message will cost from its bytes, then charges it. The
// contiguous copy the estimate needs is freed before a wait, so a waiting message holds
// only what gRPC received.
func (m *frame) admitFrame(data mem.BufferSlice) error {
	est := heapEstimate{total: unknownTypeFactor * int64(m.size)}
	if m.desc != nil {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		est = estimateHeap(m.desc, buf.ReadOnlyData())
		buf.Free()
	}
	held, err := m.admit(admissionCost(est, m.size), int64(m.size))
	m.held = held
	return err
}

// unknownTypeFactor charges a frame without a message type as the worst case of the
// known ones (a message of empty sub-messages).
const unknownTypeFactor = 80

// protoFrame is a frame that decodes into msg.
func protoFrame(msg proto.Message) *frame {
	return &frame{desc: msg.ProtoReflect().Descriptor(), decode: func(b []byte) error { return proto.Unmarshal(b, msg) }}
}
