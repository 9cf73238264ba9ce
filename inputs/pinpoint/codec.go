package pinpoint

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// codec is the server's only codec. Requests are received into a frame whose decode runs
// on the message bytes: a message that does not decode is recorded in the frame instead of
// failing RecvMsg, because grpc-go ends the whole stream when RecvMsg fails, and one bad
// message must never cost an agent its stream.
type codec struct{}

// frame receives one request message.
type frame struct {
	decode func(b []byte) error
	size   int
	err    error
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
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	switch m := v.(type) {
	case *frame:
		m.size = len(b)
		m.err = m.decode(b) // decoders copy what they keep; b returns to the pool
		return nil
	case proto.Message:
		return proto.Unmarshal(b, m)
	}
	return fmt.Errorf("pinpoint codec: cannot unmarshal into %T", v)
}

// protoFrame is a frame that decodes into msg.
func protoFrame(msg proto.Message) *frame {
	return &frame{decode: func(b []byte) error { return proto.Unmarshal(b, msg) }}
}
