package pinpoint

import (
	"reflect"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The receive budget charges a message what decoding and handling it will hold in memory,
// before anything is decoded. A fixed multiple of the wire size would not do: realistic
// spans decode to about 8 times their wire size (measured: a 4 MiB batch of 12-event spans
// holds 33 MB once decoded), but a message made of empty sub-messages decodes to up to 76
// times its size (2 wire bytes become a 144-byte PSpanEvent and its slice slot), so a
// factor sized for real spans lets such a message through 10 times under-charged, and one
// sized for the worst case charges real spans 10 times too much. estimateHeap therefore
// walks the wire bytes with the message's schema, without allocating, and adds up what
// decoding will allocate: each sub-message's Go struct, each string and bytes field, each
// slice slot and oneof wrapper. It costs about a fifth of the decode it precedes, and it
// comes out slightly above the real figure (8.5 times for the batch above).

// estimateDepth bounds the walk's recursion like protobuf's decoder (which refuses deeper
// messages anyway).
const estimateDepth = protowire.DefaultRecursionLimit

// heapShape is what the estimate needs of a message type: the size of its Go struct and
// what each field number costs.
type heapShape struct {
	size   int64
	small  []fieldShape // by field number, when the numbers are small
	fields map[protowire.Number]fieldShape
}

type fieldShape struct {
	known    bool
	sub      *heapShape // message-typed field
	bytes    bool       // string or bytes
	repeated bool
	oneof    bool
}

func (s *heapShape) field(n protowire.Number) fieldShape {
	if int(n) < len(s.small) {
		return s.small[n]
	}
	return s.fields[n]
}

var (
	heapShapes  sync.Map   // protoreflect.FullName -> *heapShape, complete
	shapeBuilds sync.Mutex // builds a type and every type it reaches at once
)

func shapeOf(md protoreflect.MessageDescriptor) *heapShape {
	if v, ok := heapShapes.Load(md.FullName()); ok {
		return v.(*heapShape)
	}
	shapeBuilds.Lock()
	defer shapeBuilds.Unlock()
	if v, ok := heapShapes.Load(md.FullName()); ok {
		return v.(*heapShape)
	}
	built := map[protoreflect.FullName]*heapShape{}
	s := buildShape(md, built)
	for name, sh := range built {
		heapShapes.LoadOrStore(name, sh)
	}
	return s
}

// buildShape makes md's shape and those of the message types it reaches (memo holds the
// ones made so far, so recursive types end).
func buildShape(md protoreflect.MessageDescriptor, memo map[protoreflect.FullName]*heapShape) *heapShape {
	if v, ok := heapShapes.Load(md.FullName()); ok {
		return v.(*heapShape)
	}
	if s, ok := memo[md.FullName()]; ok {
		return s
	}
	s := &heapShape{size: 64, fields: map[protowire.Number]fieldShape{}}
	memo[md.FullName()] = s
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
		s.size = allocSize(int64(reflect.TypeOf(mt.New().Interface()).Elem().Size()))
	}
	fs := md.Fields()
	maxNum := protowire.Number(0)
	for i := range fs.Len() {
		maxNum = max(maxNum, fs.Get(i).Number())
	}
	if maxNum < 64 {
		s.small = make([]fieldShape, maxNum+1)
	}
	for i := range fs.Len() {
		f := fs.Get(i)
		fsh := fieldShape{known: true, repeated: f.IsList(), oneof: f.ContainingOneof() != nil && !f.ContainingOneof().IsSynthetic()}
		switch f.Kind() {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			fsh.sub = buildShape(f.Message(), memo)
		case protoreflect.StringKind, protoreflect.BytesKind:
			fsh.bytes = true
		}
		if s.small != nil {
			s.small[f.Number()] = fsh
		} else {
			s.fields[f.Number()] = fsh
		}
	}
	return s
}

// allocSize rounds an allocation up as Go's size classes do, roughly.
func allocSize(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n + 15) &^ 15
}

// Per-item costs beyond the structs: a slice slot of a repeated field (a pointer, with
// append's spare capacity) and a oneof member's wrapper struct.
const (
	sliceSlotBytes = 16
	oneofBytes     = 16
)

// heapEstimate is what decoding a message will allocate (total), and the largest of its
// direct sub-messages (largest): a batch's biggest span, a stream message's span.
type heapEstimate struct {
	total, largest int64
}

// estimateHeap walks b as a message of type md. Malformed bytes end the walk: what was
// counted until then is returned (decoding fails there too).
func estimateHeap(md protoreflect.MessageDescriptor, b []byte) heapEstimate {
	var e heapEstimate
	e.total = walkHeap(shapeOf(md), b, 0, &e.largest)
	return e
}

func walkHeap(s *heapShape, b []byte, depth int, largest *int64) int64 {
	total := s.size
	if depth >= estimateDepth {
		return total + int64(len(b))
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return total
		}
		f := s.field(num)
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return total
			}
			switch {
			case !f.known: // kept as unknown bytes
				total += int64(n + m)
			case f.repeated:
				total += sliceSlotBytes
			case f.oneof:
				total += oneofBytes
			}
			b = b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return total
		}
		switch {
		case f.sub != nil:
			sub := walkHeap(f.sub, v, depth+1, nil)
			total += sub
			if largest != nil && sub > *largest {
				*largest = sub
			}
			if f.repeated {
				total += sliceSlotBytes
			}
			if f.oneof {
				total += oneofBytes
			}
		case f.bytes:
			total += allocSize(int64(len(v)))
			if f.repeated {
				total += sliceSlotBytes
			}
			if f.oneof {
				total += oneofBytes
			}
		case f.known: // packed repeated scalars: at most 8 bytes a value, a value at least a byte
			total += 8 * int64(len(v))
		default:
			total += int64(n + m)
		}
		b = b[n+m:]
	}
	return total
}
