package tracestore

import (
	"github.com/dgraph-io/badger/v4"
)

// Trace returns the spans of a trace, of every application, in no particular order: up to
// max of them (truncated then says more exist). A span stored twice comes once.
func (s *Store) Trace(traceID string, max int) (spans []Span, truncated bool, err error) {
	if traceID == "" || len(traceID) > maxIDLen {
		return nil, false, nil
	}
	prefix := append([]byte{kindSpan}, (&key{}).str(traceID).b...)
	var prev []byte
	err = s.scan(prefixRange(prefix), func(k []byte, item *badger.Item) bool {
		if string(sortPart(k)) == string(prev) {
			return true
		}
		prev = append(prev[:0], sortPart(k)...)
		if len(spans) == max {
			truncated = true
			return false
		}
		sp := Span{TraceID: traceID}
		if item.Value(func(v []byte) error { return decodeSpan(v, &sp) }) != nil {
			s.counters.corrupt.Add(1)
			return true
		}
		spans = append(spans, sp)
		return true
	})
	return spans, truncated, err
}
