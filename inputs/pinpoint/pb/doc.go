// Package pb holds the Go code generated from apmkit's own Pinpoint v1
// protocol description in inputs/pinpoint/proto/v1: the messages real
// Pinpoint agents send (spans, chunks, metadata, stats, agent info, command
// handshakes) and the gRPC services they call (/v1.Agent/..., /v1.Metadata/...,
// /v1.Span/..., /v1.Stat/..., /v1.ProfilerCommandService/...).
//
// Everything except this file and the tests is generated: edit the .proto
// files and run `make proto` (bash inputs/pinpoint/proto/gen.sh), never the
// *.pb.go files. The tests pin the wire facts that break real agents when
// wrong and decode recordings of a real agent's traffic.
package pb
