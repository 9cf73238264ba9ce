package tracestore

import (
	"github.com/dgraph-io/badger/v4"
)

// Trace returns the spans of a trace, of every application, in no particular order: up to
// max of them (truncated then says more exist). A span stored twice (a batch sent again,
// in this partition or another) comes once.
func (s *Store) Trace(traceID string, max int) (spans []Span, truncated bool, err error) {
	if traceID == "" || len(traceID) > maxIDLen {
		return nil, false, nil
	}
	prefix := append([]byte{kindSpan}, (&key{}).str(traceID).b...)
	seen := map[int64]bool{}
	err = s.scan(prefixRange(prefix), func(k []byte, item *badger.Item) bool {
		var group []Span
		err := item.Value(func(v []byte) (err error) {
			group, err = decodeSpans(v, traceID)
			return err
		})
		if err != nil {
			s.counters.corrupt.Add(1)
			return true
		}
		for _, sp := range group {
			if seen[sp.SpanID] {
				continue
			}
			if len(spans) == max {
				truncated = true
				return false
			}
			seen[sp.SpanID] = true
			spans = append(spans, sp)
		}
		return true
	})
	return spans, truncated, err
}
