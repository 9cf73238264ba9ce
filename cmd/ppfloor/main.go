// Command ppfloor is the floor of apmkit's benchmarks: a Pinpoint gRPC collector that only
// decodes and counts. It serves every service on -addr (and -stat-addr/-span-addr when
// set) until SIGINT/SIGTERM, then prints the counts as one JSON line on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ppfloor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9991", "address serving every Pinpoint service")
	statAddr := fs.String("stat-addr", "", "optional second address (Pinpoint's stat port)")
	spanAddr := fs.String("span-addr", "", "optional third address (Pinpoint's span port)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	counts, err := serve(ctx, []string{*addr, *statAddr, *spanAddr}, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ppfloor:", err)
		return 1
	}
	line, _ := json.Marshal(counts)
	fmt.Fprintln(stdout, string(line))
	return 0
}

// serve listens on every non-empty address, serves until ctx ends, and returns the counts.
func serve(ctx context.Context, addrs []string, log io.Writer) (Counts, error) {
	lns, err := listen(addrs)
	if err != nil {
		return Counts{}, err
	}
	for _, ln := range lns {
		fmt.Fprintln(log, "ppfloor: listening on", ln.Addr())
	}
	return serveOn(ctx, lns), nil
}

func listen(addrs []string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, a := range addrs {
		if a == "" {
			continue
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen %q: %w", a, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// serveOn serves on the listeners until ctx ends and returns the counts.
func serveOn(ctx context.Context, lns []net.Listener) Counts {
	f := &floor{}
	srv := newServer(f)
	done := make(chan struct{}, len(lns))
	for _, ln := range lns {
		go func() {
			_ = srv.Serve(ln) // returns when the server stops
			done <- struct{}{}
		}()
	}
	<-ctx.Done()
	stopServer(srv)
	for range lns {
		<-done
	}
	return f.counts()
}

// stopServer lets calls in flight finish for a moment; held-open ping and command
// streams would keep GracefulStop waiting forever.
func stopServer(srv interface {
	GracefulStop()
	Stop()
}) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		srv.Stop()
		<-done
	}
}
