package stats

import (
	"strconv"
	"strings"
)

// Reason says why a conversion left something out. The input counts skips by Reason.String,
// so the names are stable metric label values.
type Reason uint8

// The reasons, in the order Skipped.Each reports them.
const (
	// UnknownMessage: a PStatMessage with no content this package knows: an empty message,
	// or a oneof field added by a newer agent (it decodes into unknown fields).
	UnknownMessage Reason = iota
	// ProfilerMetric: a PProfilerMetric (Java 3.x network metrics). docs/SCHEMA.md has no
	// measurement for it, so it is counted rather than written under an invented name.
	ProfilerMetric
	// BadTimestamp: a sample or URI window whose timestamp is <= 0 or too large for
	// nanoseconds (after the year 2262); writing it would put the point at 1970 or overflow.
	BadTimestamp
	// ActiveTraceHistogram: an active-trace histogram without exactly 4 counts or with a
	// negative count; the four ActiveTrace* fields are left out, the rest of the sample is kept.
	ActiveTraceHistogram
	// URIHistogram: a URI entry without a total histogram, or a histogram that has neither
	// 0 nor 8 buckets, or a negative bucket count; the entry is left out.
	URIHistogram
	// NoURI: a URI entry whose uri is empty (nothing left to tag it with).
	NoURI
	// NoValues: a sample or data source that carries no value at all (every sub-message
	// absent or unavailable); a point without fields cannot be written.
	NoValues
	// NilEntry: a nil element in a repeated field. Decoding never produces one; only
	// hand-built messages can, and they must not crash the converter.
	NilEntry

	numReasons
)

var reasonNames = [numReasons]string{
	UnknownMessage:       "unknown_message",
	ProfilerMetric:       "profiler_metric",
	BadTimestamp:         "bad_timestamp",
	ActiveTraceHistogram: "active_trace_histogram",
	URIHistogram:         "uri_histogram",
	NoURI:                "uri_empty",
	NoValues:             "no_values",
	NilEntry:             "nil_entry",
}

// String returns the reason's metric label.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Skipped counts what one conversion left out, by reason. The zero value means nothing
// was skipped. It is a value (no allocation) so converting stays cheap.
type Skipped struct {
	counts [numReasons]int32
}

func (s *Skipped) add(r Reason) { s.counts[r]++ }

// Total returns how many things were skipped for any reason.
func (s Skipped) Total() int {
	n := 0
	for _, c := range s.counts {
		n += int(c)
	}
	return n
}

// Of returns how many things were skipped for reason r.
func (s Skipped) Of(r Reason) int {
	if r >= numReasons {
		return 0
	}
	return int(s.counts[r])
}

// Each calls fn for every reason with a non-zero count, in Reason order.
func (s Skipped) Each(fn func(r Reason, n int)) {
	for r, c := range s.counts {
		if c > 0 {
			fn(Reason(r), int(c))
		}
	}
}

// String renders the non-zero counts, e.g. "active_trace_histogram=1 uri_histogram=2", for
// logs and test failures; "" when nothing was skipped.
func (s Skipped) String() string {
	var b strings.Builder
	s.Each(func(r Reason, n int) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(r.String())
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(n))
	})
	return b.String()
}
