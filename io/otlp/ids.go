// Package otlp maps apmkit's span and metric records (read back from line protocol by
// io/lprecord) to OpenTelemetry's wire types: trace and metric export requests, with the
// semantic-convention attributes where Pinpoint has the data and pinpoint.* for the rest
// (docs/OTLP.md). It does no I/O: the io package's otlp output sends what it builds.
package otlp

import (
	"crypto/sha256"
	"encoding/binary"
)

// TraceID is the OTLP trace id of a Pinpoint transaction id (the trace_id field,
// agentId^agentStartTime^sequence): the first 16 bytes of the SHA-256 of its UTF-8 bytes.
// It depends on the transaction id only, so every span of a transaction, from any agent
// and through any apmkit replica, gets the same trace id. The all-zero id is invalid in
// OTLP; the one transaction id in 2^128 that would hash to it gets ...01 instead.
// `printf %s "$txid" | sha256sum | cut -c1-32` gives the same id in hex.
func TraceID(transactionID string) [16]byte {
	sum := sha256.Sum256([]byte(transactionID))
	var id [16]byte
	copy(id[:], sum[:16])
	if id == ([16]byte{}) {
		id[15] = 1
	}
	return id
}

// SpanID is the OTLP span id of an apmkit span id (span_id, parent_id): the int64's 8 bytes
// big-endian, two's complement, so the id in hex is the decimal id's uint64 form and a
// child's parent_span_id is its parent's span_id exactly as in line protocol. Span id 0 is
// "no parent" in apmkit and invalid in OTLP: lprecord never yields such a span.
func SpanID(id int64) [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return b
}
