// Package load emulates Pinpoint agents over real gRPC: each agent registers, sends its
// metadata, holds a ping and a command stream open like real agents, and sends the
// transactions package gen builds, by stream or by batch, at a fixed rate or as fast as
// the collector accepts them.
package load

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
)

// Span transports.
const (
	TransportStream = "stream" // SendSpan client stream (Java <= 3.0, Go agent option)
	TransportBatch  = "batch"  // SendSpanBatch unary calls (Java 3.1+, Go agent HEAD)
)

// Config is one ppload run.
type Config struct {
	// AgentAddr serves Agent, Metadata and ProfilerCommandService; StatAddr and SpanAddr
	// default to it (one port, or Pinpoint's three).
	AgentAddr, StatAddr, SpanAddr string
	Agents                        int
	Gen                           gen.Options
	// Rate is spans/s over all agents; 0 = closed loop: as fast as the collector accepts,
	// with at most Inflight batches per agent (batch) or gRPC flow control (stream).
	Rate float64
	// Duration bounds the time spans are produced; MaxSpans bounds their number. At least
	// one is needed; what was produced is sent before Run returns.
	Duration  time.Duration
	MaxSpans  int64
	Transport string
	BatchSize int           // spans per SendSpanBatch (Java 20, Go 50)
	Inflight  int           // batches in flight per agent (Java 10)
	Flush     time.Duration // a partial batch goes out after this long (Java 1 s, Go 500 ms)
	Deadline  time.Duration // per SendSpanBatch call (Java 6 s)
	Stats     bool          // send a PAgentStatBatch of 6 samples every StatEvery
	StatEvery time.Duration
	PingEvery time.Duration
	Seed      uint64
	// RunID goes into agent ids so runs against one collector do not mix; random when empty.
	RunID string
	// Handshakes is how many agents register at once.
	Handshakes int
}

// Defaults returns a config with the transport and cadence defaults of the Java agent.
func Defaults() Config {
	return Config{
		AgentAddr: "127.0.0.1:9991",
		Agents:    8,
		Gen:       gen.Options{Events: 12, ChunkFrac: 0.2, AsyncFrac: 0.1, ErrorFrac: 0.05, LinkedFrac: 0.3},
		Duration:  30 * time.Second,
		Transport: TransportBatch,
		BatchSize: 20,
		Inflight:  10,
		Flush:     time.Second,
		Deadline:  6 * time.Second,
		Stats:     true, // so a first run shows every measurement, not only spans
		StatEvery: 30 * time.Second,
		PingEvery: 60 * time.Second,
		Seed:      1,
		// Enough to register 500 agents in well under a second without a connection storm.
		Handshakes: 32,
	}
}

// Validate names every option out of range.
func (c *Config) Validate() error {
	errs := []error{c.Gen.Validate()}
	if c.AgentAddr == "" {
		errs = append(errs, errors.New("addr: required"))
	}
	if c.Agents < 1 || c.Agents > 100_000 {
		errs = append(errs, fmt.Errorf("agents: %d must be within 1..100000", c.Agents))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate: %v must be >= 0", c.Rate))
	}
	if c.Duration <= 0 && c.MaxSpans <= 0 {
		errs = append(errs, errors.New("duration or spans: one bound is needed"))
	}
	if c.Transport != TransportStream && c.Transport != TransportBatch {
		errs = append(errs, fmt.Errorf("transport: %q must be %s or %s", c.Transport, TransportStream, TransportBatch))
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"batch-size", c.BatchSize}, {"inflight", c.Inflight}, {"handshakes", c.Handshakes}} {
		if v.n < 1 {
			errs = append(errs, fmt.Errorf("%s: %d must be >= 1", v.name, v.n))
		}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"flush", c.Flush}, {"deadline", c.Deadline}, {"stat-every", c.StatEvery}, {"ping-every", c.PingEvery}} {
		if v.d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s must be > 0", v.name, v.d))
		}
	}
	if len(c.RunID) > 8 || strings.Trim(c.RunID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		errs = append(errs, fmt.Errorf("run-id: %q must be at most 8 letters or digits (agent ids must stay <= 24 characters)", c.RunID))
	}
	return errors.Join(errs...)
}

func (c *Config) statAddr() string { return orAddr(c.StatAddr, c.AgentAddr) }
func (c *Config) spanAddr() string { return orAddr(c.SpanAddr, c.AgentAddr) }

func orAddr(a, def string) string {
	if a == "" {
		return def
	}
	return a
}
