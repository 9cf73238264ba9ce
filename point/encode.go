package point

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// Encoder appends points to a line-protocol buffer with nanosecond precision.
// It is not safe for concurrent use; reuse one per goroutine.
type Encoder struct {
	enc lineprotocol.Encoder
}

// NewEncoder returns an encoder with an empty buffer.
func NewEncoder() *Encoder {
	e := &Encoder{}
	e.enc.SetPrecision(lineprotocol.Nanosecond)
	// Validate checks everything the encoder's strict mode would, once; lax mode skips the
	// encoder's second pass over every key and value.
	e.enc.SetLax(true)
	return e
}

// Encode appends p as one line. An invalid point is not written and its error returned;
// the lines already in the buffer are kept.
func (e *Encoder) Encode(p *Point) error {
	if err := p.Validate(); err != nil {
		return err
	}
	e.enc.StartLine(p.Name)
	for _, t := range p.Tags {
		e.enc.AddTag(t.Key, t.Value)
	}
	for _, f := range p.Fields {
		e.enc.AddField(f.Key, f.lpValue())
	}
	e.enc.EndLine(time.Unix(0, p.Time))
	if err := e.enc.Err(); err != nil {
		// The encoder already cut the bad line; SetBuffer resets its line state so the
		// next point starts clean. Validate should make this unreachable.
		e.enc.SetBuffer(e.enc.Bytes())
		return fmt.Errorf("point: encode %s: %w", p.Name, err)
	}
	return nil
}

// Bytes returns the encoded lines. The slice is valid until the next Encode or Reset.
func (e *Encoder) Bytes() []byte { return e.enc.Bytes() }

// Len returns the number of bytes encoded so far.
func (e *Encoder) Len() int { return len(e.enc.Bytes()) }

// Reset empties the buffer, keeping its memory.
func (e *Encoder) Reset() { e.enc.Reset() }

// lpValue converts without copying: string fields reference the point's string, which is
// immutable and outlives the encoding.
func (f Field) lpValue() lineprotocol.Value {
	switch f.kind {
	case KindInt:
		return lineprotocol.IntValue(f.IntValue())
	case KindUint:
		return lineprotocol.UintValue(f.num)
	case KindFloat:
		v, _ := lineprotocol.FloatValue(f.FloatValue())
		return v
	case KindBool:
		return lineprotocol.BoolValue(f.num != 0)
	default:
		v, err := lineprotocol.NewValueFromBytes(lineprotocol.String, unsafe.Slice(unsafe.StringData(f.str), len(f.str)))
		if err != nil {
			v, _ = lineprotocol.StringValue("")
		}
		return v
	}
}

// AppendLine encodes one point into a fresh line (for tests and debugging).
func AppendLine(dst []byte, p *Point) ([]byte, error) {
	e := NewEncoder()
	if err := e.Encode(p); err != nil {
		return dst, err
	}
	return append(dst, e.Bytes()...), nil
}
