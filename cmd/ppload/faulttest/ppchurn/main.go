// Command ppchurn makes emulated Pinpoint agents connect and disconnect against a collector
// (see faulttest.Churn) and writes what the collector acknowledged as JSON. The fault tests
// run it as a subprocess: a thousand agents' gRPC clients in the race-instrumented test
// process would cost more CPU than the collector under test gets.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/apmkit/apmkit/cmd/ppload/faulttest"
)

func main() {
	var opts faulttest.ChurnOptions
	out := flag.String("out", "", "file for the JSON result (acknowledged entry span ids included); empty = stdout")
	flag.StringVar(&opts.Addr, "addr", "127.0.0.1:9991", "collector address")
	flag.IntVar(&opts.Agents, "agents", 1000, "agents connected at once")
	flag.IntVar(&opts.Sessions, "sessions", 5000, "sessions (connect, register, ping, one batch, disconnect) in all")
	flag.IntVar(&opts.SpansPerSession, "spans", 2, "transactions sent in each session's batch")
	flag.DurationVar(&opts.Hold, "hold", 500*time.Millisecond, "a session stays connected up to this long after its batch")
	flag.StringVar(&opts.RunID, "run-id", "churn", "up to 8 letters/digits in agent ids")
	flag.Uint64Var(&opts.Seed, "seed", 1, "random seed")
	flag.DurationVar(&opts.Deadline, "deadline", 30*time.Second, "deadline of each call")
	limit := flag.Duration("limit", 5*time.Minute, "give up after this long")
	pause := flag.Bool("pause", false, "every agent runs one session first; then print \"warm\" on stdout and wait for a line on stdin before the churn")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	if *pause {
		opts.Warmup = func() {
			fmt.Println("warm")
			line := make(chan struct{})
			go func() {
				_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
				close(line)
			}()
			select {
			case <-line:
			case <-ctx.Done():
			}
		}
	}
	res, err := faulttest.Churn(ctx, opts)
	if res == nil {
		fmt.Fprintln(os.Stderr, "ppchurn:", err)
		os.Exit(2)
	}
	b, jerr := json.Marshal(res)
	if jerr != nil {
		fmt.Fprintln(os.Stderr, "ppchurn:", jerr)
		os.Exit(2)
	}
	if *out == "" {
		fmt.Println(string(b))
	} else if werr := os.WriteFile(*out, b, 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "ppchurn:", werr)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "ppchurn: %d warm-up sessions, then %d sessions in %.1f s; %d failed; %d batches answered, errors %v\n",
		res.Warmup, res.Sessions, res.Seconds, res.Failed, res.Ledger.Batches, res.Ledger.Errors)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ppchurn:", err)
		os.Exit(1)
	}
}
