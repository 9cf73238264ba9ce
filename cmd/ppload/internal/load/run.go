package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// Run registers cfg.Agents agents, sends spans until the duration or span bound is
// reached, sends what was produced, closes every stream and returns what the collector
// accepted. It fails only when agents cannot register; span call failures are counted.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64() | 1
	}
	if cfg.RunID == "" {
		cfg.RunID = strconv.FormatUint(rand.Uint64()%(36*36*36*36*36), 36)
	}
	agents, err := newAgents(&cfg)
	defer closeAgents(agents)
	if err != nil {
		return nil, err
	}
	if err := handshakeAll(ctx, &cfg, agents); err != nil {
		return nil, err
	}
	if cfg.Stats {
		for _, a := range agents {
			a.startStats(ctx, cfg.StatEvery)
		}
	}
	start := time.Now()
	lim := &limits{maxSpans: cfg.MaxSpans}
	if cfg.Duration > 0 {
		lim.deadline = start.Add(cfg.Duration)
	}
	sendSpans(ctx, &cfg, agents, lim)
	elapsed := time.Since(start)
	closeAgents(agents) // count the last stat batches and pings before summing up
	return summarize(&cfg, agents, elapsed), nil
}

// newAgents builds the agents: even ones are Web, odd ones API, and each Web agent calls
// the API agent after it (a lone last Web agent makes no linked calls).
func newAgents(cfg *Config) ([]*agent, error) {
	start := time.Now().UnixMilli()
	agents := make([]*agent, cfg.Agents)
	for i := range agents {
		role := gen.Web
		if i%2 == 1 {
			role = gen.API
		}
		id := gen.Agent{
			ID:   fmt.Sprintf("ppl-%s-%d", cfg.RunID, i),
			Name: fmt.Sprintf("%s-%d", role.App(), i), Role: role, StartTime: start,
		}
		agents[i] = &agent{id: id, rec: newRecord(), outbox: make(chan *pb.PSpanMessage, max(2*cfg.BatchSize, 64))}
		if err := agents[i].dial(cfg); err != nil {
			return agents, err
		}
	}
	for i := 0; i+1 < len(agents); i += 2 {
		agents[i].callee = agents[i+1]
	}
	return agents, nil
}

// handshakeAll registers the agents, cfg.Handshakes at a time.
func handshakeAll(ctx context.Context, cfg *Config, agents []*agent) error {
	slots := make(chan struct{}, cfg.Handshakes)
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			errs[i] = a.handshake(ctx, cfg)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sendSpans runs a producer and a sender per agent. Outboxes close only when every
// producer is done, since Web producers also write to their callee's outbox.
func sendSpans(ctx context.Context, cfg *Config, agents []*agent, lim *limits) {
	var producers, senders sync.WaitGroup
	for i, a := range agents {
		g, _ := gen.New(cfg.Gen, a.id, cfg.Seed+uint64(i)) // options were validated
		p := newPacer(cfg.Rate, i, len(agents))
		producers.Go(func() { a.produce(ctx, g, p, lim) })
		senders.Go(func() {
			if cfg.Transport == TransportStream {
				a.sendStream(ctx)
			} else {
				a.sendBatches(ctx, cfg)
			}
		})
	}
	producers.Wait()
	for _, a := range agents {
		close(a.outbox)
	}
	senders.Wait()
}

// closeAgents ends every agent's streams and connections, all agents at once since each
// may wait a moment for the collector to end its streams. It is idempotent.
func closeAgents(agents []*agent) {
	var wg sync.WaitGroup
	for _, a := range agents {
		if a == nil {
			continue
		}
		wg.Go(a.close)
	}
	wg.Wait()
}

func summarize(cfg *Config, agents []*agent, elapsed time.Duration) *Summary {
	s := &Summary{
		Errors: map[string]int64{}, FirstErrors: map[string]string{}, Messages: map[string]int64{}, Agents: len(agents),
		Transport: cfg.Transport, EventsPer: cfg.Gen.Events, Seed: cfg.Seed, RunID: cfg.RunID,
	}
	for _, a := range agents {
		s.add(a.id, a.rec)
	}
	s.finish(elapsed.Seconds())
	return s
}
