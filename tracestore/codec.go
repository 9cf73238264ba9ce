package tracestore

import (
	"encoding/binary"
	"errors"
	"math"
)

// The store's values are a small binary format of their own, not JSON: a span costs a third
// of its JSON size and decodes without reflection. Every value starts with a format byte,
// so a later apmkit can change a record and still read (or skip) the old one. What is read
// back from disk is untrusted: a decoder never panics and never allocates more than the
// value's own length (FuzzDecode).

// errCorrupt is returned for a value that does not decode; readers count and skip it.
var errCorrupt = errors.New("tracestore: corrupt record")

// maxString bounds any one string written (an exception stack, a long SQL): a record stays
// well under badger's value threshold, so every value lives in the LSM tree and dropping a
// partition frees its space at once.
const maxString = 16 << 10

// writer appends fields to a value.
type writer struct{ b []byte }

func (w *writer) byte(v byte)      { w.b = append(w.b, v) }
func (w *writer) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *writer) float(v float64)  { w.b = binary.BigEndian.AppendUint64(w.b, math.Float64bits(v)) }

func (w *writer) bool(v bool) {
	if v {
		w.byte(1)
		return
	}
	w.byte(0)
}

func (w *writer) string(s string) {
	if len(s) > maxString {
		s = truncate(s, maxString)
	}
	w.uvarint(uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) attrs(kv []KV) {
	w.uvarint(uint64(len(kv)))
	for _, a := range kv {
		w.string(a.Key)
		w.string(a.Value)
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// reader takes fields from a value; the first failure sticks, so a decoder reads on and
// checks err once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() { r.err, r.b = errCorrupt, nil }

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bool() bool { return r.byte() == 1 }

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) float() float64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) || n > maxString { // the writer never writes longer ones
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a number of items that each take at least min bytes: a count the rest of
// the value cannot hold is corruption, not a reason to allocate.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) attrs() []KV {
	n := r.count(2)
	if n == 0 {
		return nil
	}
	kv := make([]KV, 0, n)
	for range n {
		kv = append(kv, KV{Key: r.string(), Value: r.string()})
	}
	return kv
}

// format checks the leading format byte.
func (r *reader) format(want byte) {
	if r.byte() != want {
		r.fail()
	}
}

// done reports the decoding error, or trailing bytes (a value of another format).
func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		return errCorrupt
	}
	return r.err
}
