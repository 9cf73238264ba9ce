// Package pinpoint is apmkit's Pinpoint input: a gRPC collector that unchanged Pinpoint
// agents (Java, Go, PHP/Python through the c-agent) send their agent info, metadata, spans
// and stats to.
package pinpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/servicetype"
	"github.com/apmkit/apmkit/inputs/pinpoint/stats"
	"github.com/apmkit/apmkit/inputs/pinpoint/trace"
)

// Name is the input's name in [[inputs.pinpoint]] and ENV_INPUT_PINPOINT_*.
const Name = "pinpoint"

// The input's namespaces in the cache: agent info, metadata and the serviceType table;
// and the assembler's pending chunks and span skeletons.
const (
	cacheNamespace = "pinpoint"
	traceNamespace = "pinpoint-trace"
)

func init() {
	inputs.Add(inputs.Plugin{
		Name:      Name,
		Doc:       "Pinpoint input: a gRPC collector for Pinpoint agents (agent, metadata, span, stat and command services).",
		NewConfig: func() inputs.Config { return DefaultConfig() },
		New: func(cfg inputs.Config) (inputs.Input, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("pinpoint: config is %T", cfg)
			}
			return New(c), nil
		},
	})
}

// Input is one running Pinpoint collector.
type Input struct {
	cfg *Config
	log *slog.Logger

	counters    *counters
	budget      *receiveBudget // memory of the messages being decoded and handled
	conns       *connLimit     // max_connections
	meta        *meta.Store
	types       *servicetype.Table
	ownDB       *cache.DB // only with [storage] path
	spans       SpanConsumer
	asm         atomic.Pointer[trace.Assembler]
	stats       StatConsumer
	panicLogged sync.Map // method -> true
	unsubscribe func()   // from other replicas' metadata news (shared cache only)

	srv       *grpc.Server
	listeners []string
	serving   sync.WaitGroup
	data      *drainGate     // Span and Stat calls, drained first at Stop
	readers   sync.WaitGroup // reader goroutines of data streams (recvData)
	grace     time.Duration  // bound of each stop phase (stopGrace; tests change it)

	mu      sync.Mutex
	started bool
	stopped bool
}

// New returns an input for a validated config.
func New(cfg *Config) *Input {
	return &Input{cfg: cfg, log: slog.Default(), spans: discard{}, stats: discard{}, data: newDrainGate(), grace: stopGrace}
}

// Start opens the input's cache, binds every address (so a port in use fails apmkit's
// start with a clear error) and serves in goroutines.
func (in *Input) Start(ctx context.Context, host inputs.Host) (err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.started {
		return errors.New("pinpoint: already started")
	}
	in.started = true
	in.log = host.Logger()
	defer func() {
		if err != nil {
			_ = in.closeLocked(context.Background())
		}
	}()
	if in.counters, err = newCounters(host.Metrics()); err != nil {
		return fmt.Errorf("pinpoint: metrics: %w", err)
	}
	if err := in.startLimits(host); err != nil {
		return err
	}
	store, traceStore, err := in.openStores(host)
	if err != nil {
		return err
	}
	mopts := meta.Options{TTL: in.cfg.MetadataTTL, OnPut: in.metadataArrived}
	if shared, ok := store.(cache.Shared); ok {
		if err := in.shareMetadata(shared, &mopts); err != nil {
			return err
		}
	}
	in.meta, err = meta.NewStore(store, mopts)
	if err != nil {
		return err
	}
	in.meta.Start() // the refresher of agent runs' TTLs; stopped by closeLocked
	if in.types, err = in.loadTypes(store); err != nil {
		return err
	}
	if in.cfg.DecodeOnly {
		in.log.Warn("pinpoint: decode_only is set: messages are decoded and counted, then dropped")
	} else {
		in.stats = &statSink{conv: stats.NewConverter(in.meta, in.types), feed: host.Feed, counters: in.counters}
		if err := in.startAssembler(host, traceStore); err != nil {
			return err
		}
	}
	if in.srv, err = in.newServer(); err != nil {
		return err
	}
	return in.listen(ctx)
}

// startLimits sets up the receive budget and max_connections, with their metrics.
func (in *Input) startLimits(host inputs.Host) error {
	in.budget = newReceiveBudget(int64(in.cfg.ReceiveBudgetMB) << 20)
	in.conns = newConnLimit(in.cfg.MaxConnections, in.log)
	if reg := host.Metrics(); reg != nil {
		for _, c := range append(in.budget.collectors(), in.conns.collectors()...) {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("pinpoint: metrics: %w", err)
			}
		}
	}
	// A full batch of agent-like spans is charged about 11.5 times its size.
	if need := 12 * int64(in.cfg.MaxRecvMsgSize); need > in.budget.limits[classData] {
		in.log.Warn("pinpoint: receive_budget_mb is small for max_recv_msg_size: the largest span batches will be refused (RESOURCE_EXHAUSTED)",
			"receive_budget_mb", in.cfg.ReceiveBudgetMB, "max_recv_msg_size", in.cfg.MaxRecvMsgSize, "suggested_mb", (need*8/7>>20)+1)
	}
	return nil
}

// startAssembler starts the stage that rebuilds transactions from spans and chunks.
func (in *Input) startAssembler(host inputs.Host, store cache.Store) error {
	asm, err := trace.New(trace.Options{
		Store:         store,
		Meta:          in.meta,
		Types:         in.types,
		Hostname:      host.Hostname(),
		ChunkWait:     in.cfg.ChunkWait,
		MetadataWait:  in.cfg.MetadataWait,
		DelMessage:    in.cfg.DelMessage,
		RawHTTPURLTag: in.cfg.HTTPURLTag == HTTPURLTagRaw,
		Emit:          host.FeedSpan,
		Metrics:       host.Metrics(),
		Logger:        in.log,
	})
	if err != nil {
		return fmt.Errorf("pinpoint: %w", err)
	}
	if err := asm.Start(); err != nil {
		return fmt.Errorf("pinpoint: %w", err)
	}
	in.asm.Store(asm)
	in.spans = asm
	return nil
}

// metadataChannel is where replicas sharing a cache announce new metadata of an agent run
// (message: AgentKey.String()).
const metadataChannel = "metadata"

// shareMetadata wires metadata news between replicas sharing the cache: this one announces
// what it stored, and spans held here for metadata another replica received are woken
// by its announcement, within metadata_wait and without polling.
func (in *Input) shareMetadata(shared cache.Shared, opts *meta.Options) error {
	opts.OnStored = func(agent meta.AgentKey) {
		// A failure is the cache's to count; spans held elsewhere then go out at
		// metadata_wait, or at their replica's next metadata wake-up.
		_ = shared.Publish(metadataChannel, []byte(agent.String()))
	}
	stop, err := shared.Subscribe(metadataChannel, func(msg []byte) {
		if agent, ok := meta.ParseAgentKey(string(msg)); ok {
			in.metadataArrived(agent)
		}
	})
	if err != nil {
		return fmt.Errorf("pinpoint: subscribe to metadata news: %w", err)
	}
	in.unsubscribe = stop
	return nil
}

// metadataArrived wakes the spans that wait for an agent run's metadata.
func (in *Input) metadataArrived(agent meta.AgentKey) {
	if asm := in.asm.Load(); asm != nil {
		asm.MetadataArrived(agent)
	}
}

// openStores returns the input's two cache namespaces (agent info, metadata and the
// serviceType table; the assembler's pending chunks and held spans): of its own badger DB
// when [storage] path is set (DataKit's option), else of apmkit's cache, where the host
// keeps them apart from other instances'.
func (in *Input) openStores(host inputs.Host) (store, traceStore cache.Store, err error) {
	if in.cfg.Storage.Path == "" {
		if store, err = host.Store(cacheNamespace); err != nil {
			return nil, nil, fmt.Errorf("pinpoint: %w", err)
		}
		if traceStore, err = host.Store(traceNamespace); err != nil {
			return nil, nil, fmt.Errorf("pinpoint: %w", err)
		}
		return store, traceStore, nil
	}
	if shared, err := host.Store(cacheNamespace); err == nil {
		if _, ok := shared.(cache.Shared); ok {
			return nil, nil, errors.New("pinpoint: storage.path would keep this instance's state in a badger of its own, out of the cache that [cache] redis_url shares with the other replicas: remove storage.path")
		}
	}
	dir := in.cfg.Storage.Path
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(host.DataDir(), dir)
	}
	cfg := cache.DefaultConfig()
	cfg.CapacityMB = in.cfg.Storage.Capacity
	db, err := cache.OpenBadger(dir, cfg, in.log.With("component", "pinpoint-storage"))
	if err != nil {
		return nil, nil, fmt.Errorf("pinpoint: storage: %w", err)
	}
	in.ownDB = db
	return db.Namespace(cacheNamespace), db.Namespace(traceNamespace), nil
}

// listen binds address, stat_address and span_address; the same server serves all.
func (in *Input) listen(ctx context.Context) error {
	var lc net.ListenConfig
	var lns []net.Listener
	for _, addr := range []string{in.cfg.Address, in.cfg.StatAddress, in.cfg.SpanAddress} {
		if addr == "" {
			continue
		}
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("pinpoint: listen %q: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		in.listeners = append(in.listeners, ln.Addr().String())
		ln = in.conns.wrap(ln)
		in.serving.Add(1)
		go func(ln net.Listener) {
			defer in.serving.Done()
			if err := in.srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				in.log.Error("pinpoint: gRPC server stopped", "address", ln.Addr().String(), "error", err)
			}
		}(ln)
	}
	in.log.Info("pinpoint: listening for agents", "addresses", in.listeners, "tls", in.cfg.TLSCertFile != "")
	return nil
}

// Stop shuts the input down in two phases, so no span is accepted while its metadata can
// no longer be:
//
//  1. Span and Stat calls drain: new ones are refused with UNAVAILABLE (agents reconnect,
//     to the next apmkit if there is one), open streams end after the message in hand,
//     and Stop waits for the calls in flight, while the Agent and Metadata services keep
//     answering (metadata that comes meanwhile still releases held spans).
//  2. The server stops: unary calls in flight may finish, then every connection closes
//     (ping and command streams never end by themselves).
//
// Each phase takes at most the stop grace period (2 s) and ends early with ctx. Then Stop
// waits for every handler to return and closes the assembler, which keeps the spans still
// waiting for metadata in the store for the next start, and the cache. It is idempotent
// and safe before Start.
func (in *Input) Stop(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped || !in.started {
		in.stopped = true
		return nil
	}
	in.stopped = true
	in.data.drain()
	if in.srv != nil {
		in.drainData(ctx)
		done := make(chan struct{})
		go func() {
			in.srv.GracefulStop()
			close(done)
		}()
		grace := time.NewTimer(in.grace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			in.srv.Stop() // agents' long-lived streams would hold GracefulStop forever
			<-done
		case <-ctx.Done():
			in.srv.Stop()
			<-done
		}
	}
	return in.closeLocked(ctx)
}

// drainData waits, within the grace period and ctx, for the Span and Stat calls in
// flight; the drain began already. What is still running after it is cut by the server's
// stop.
func (in *Input) drainData(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, in.grace)
	defer cancel()
	if err := in.data.wait(ctx); err != nil {
		in.log.Warn("pinpoint: span and stat calls still running at the end of the stop grace period; closing them",
			"grace", in.grace, "error", err)
	}
}

// closeLocked releases what Start acquired. The server is down first, so no handler feeds
// the assembler while it flushes what it holds.
func (in *Input) closeLocked(ctx context.Context) error {
	if in.srv != nil {
		in.srv.Stop()
	}
	in.serving.Wait()
	in.readers.Wait() // their streams ended with the server
	if in.unsubscribe != nil {
		in.unsubscribe()
		in.unsubscribe = nil
	}
	if in.meta != nil {
		in.meta.Stop()
	}
	var errs []error
	if asm := in.asm.Swap(nil); asm != nil {
		errs = append(errs, asm.Stop(ctx))
	}
	if in.ownDB != nil {
		errs = append(errs, in.ownDB.Close())
		in.ownDB = nil
	}
	return errors.Join(errs...)
}

// Addrs returns the addresses the input listens on, in config order.
func (in *Input) Addrs() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.listeners...)
}

// Stats is the input's part of /v1/stats.
func (in *Input) Stats() any {
	if in.counters == nil {
		return nil
	}
	st := in.counters.snapshot()
	st.Listeners = in.Addrs()
	if in.budget != nil {
		b := in.budget.stats()
		st.Budget = &b
	}
	if in.conns != nil {
		st.Connections = in.conns.open.Load()
	}
	if asm := in.asm.Load(); asm != nil {
		ts := asm.Stats()
		st.Trace = &ts
	}
	return st
}

// Meta is the input's agent and metadata store (lookups for tools and tests).
func (in *Input) Meta() *meta.Store { return in.meta }

// stopGrace bounds each phase of Stop: the drain of span and stat calls, then the unary
// calls in flight before every call is closed.
const stopGrace = 2 * time.Second
