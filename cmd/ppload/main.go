// Command ppload emulates Pinpoint agents over real gRPC to load a Pinpoint collector such
// as apmkit: each agent registers, sends its metadata, holds a ping and a command stream
// open, and sends spans shaped like Java web requests by stream or batch. It prints what
// it sent per agent on stderr and a JSON summary as the last line on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/apmkit/apmkit/cmd/ppload/internal/load"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "ppload:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ppload:", err)
		return 1
	}
	sum.WriteReport(stderr)
	line, err := json.Marshal(sum)
	if err != nil {
		fmt.Fprintln(stderr, "ppload:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(line))
	return 0
}

func parseFlags(args []string, stderr io.Writer) (load.Config, error) {
	cfg := load.Defaults()
	fs := flag.NewFlagSet("ppload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: ppload [flags]\n\nEmulates Pinpoint agents sending to a collector on -addr; the last stdout line is a JSON summary.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.AgentAddr, "addr", cfg.AgentAddr, "collector address for every service (agent, metadata, command; and stat/span unless set)")
	fs.StringVar(&cfg.AgentAddr, "agent-addr", cfg.AgentAddr, "same as -addr: the Agent/Metadata/Command port (Pinpoint's 9991)")
	fs.StringVar(&cfg.StatAddr, "stat-addr", "", "Stat service address (Pinpoint's 9992); empty = -addr")
	fs.StringVar(&cfg.SpanAddr, "span-addr", "", "Span service address (Pinpoint's 9993); empty = -addr")
	fs.IntVar(&cfg.Agents, "agents", cfg.Agents, "agents to emulate: even ones are application ppload-web, odd ones ppload-api")
	fs.IntVar(&cfg.Gen.Events, "events", cfg.Gen.Events, "span events per span (at least 6); async chunks add 2")
	fs.Float64Var(&cfg.Rate, "rate", 0, "spans/s over all agents; 0 = as fast as the collector accepts (closed loop)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long spans are produced (0 = until -spans)")
	fs.Int64Var(&cfg.MaxSpans, "spans", 0, "stop after about this many spans (0 = until -duration)")
	fs.StringVar(&cfg.Transport, "transport", cfg.Transport, "span transport: stream (SendSpan) or batch (SendSpanBatch)")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "spans per batch: 20 like Java, 50 like Go")
	fs.IntVar(&cfg.Inflight, "inflight", cfg.Inflight, "batches in flight per agent (Java: 10)")
	fs.DurationVar(&cfg.Flush, "flush", cfg.Flush, "a partial batch is sent after this long (Java 1s, Go 500ms)")
	fs.DurationVar(&cfg.Deadline, "deadline", cfg.Deadline, "deadline of each SendSpanBatch call (Java: 6s)")
	fs.Float64Var(&cfg.Gen.ChunkFrac, "chunk-frac", cfg.Gen.ChunkFrac, "share of spans of more than 20 events sent as sync chunks of 20 + the final span")
	fs.Float64Var(&cfg.Gen.AsyncFrac, "async-frac", cfg.Gen.AsyncFrac, "share of transactions with async work (an async chunk after the span)")
	fs.Float64Var(&cfg.Gen.ErrorFrac, "error-frac", cfg.Gen.ErrorFrac, "share of transactions that fail (err=1, a query with exceptionInfo)")
	fs.Float64Var(&cfg.Gen.LinkedFrac, "linked-frac", cfg.Gen.LinkedFrac, "share of ppload-web transactions that call ppload-api (a child span sent by the next agent)")
	fs.BoolVar(&cfg.Stats, "stats", cfg.Stats, "send JVM stats (a PAgentStatBatch of 6 samples, with two connection pools) and URI stats per agent at the start and every -stat-every; -stats=false sends spans only")
	fs.DurationVar(&cfg.StatEvery, "stat-every", cfg.StatEvery, "stat batch interval")
	fs.DurationVar(&cfg.PingEvery, "ping-every", cfg.PingEvery, "PPing interval on the held ping session")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0 = random; the summary prints it): the same seed sends the same spans")
	fs.StringVar(&cfg.RunID, "run-id", "", "up to 8 letters/digits in agent ids (ppl-RUNID-N); random when empty")
	fs.IntVar(&cfg.Handshakes, "handshakes", cfg.Handshakes, "agents registering at once")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, cfg.Validate()
}
