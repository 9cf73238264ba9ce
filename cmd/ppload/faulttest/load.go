package faulttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// LoadOptions shape a Load.
type LoadOptions struct {
	Addr string
	// Pairs of agents: a ppload-web agent whose transactions call a ppload-api agent
	// (Gen.LinkedFrac of them), as ppload pairs them.
	Pairs int
	// RunID goes into agent ids (lt-RUNID-N, at most 24 characters) so the spans of two
	// loads against one apmkit can be told apart.
	RunID string
	// Rate is transactions per second over all pairs.
	Rate      float64
	BatchSize int
	Gen       gen.Options
	Seed      uint64
	// PingEvery > 0 holds a PingSession per agent, pinged at that interval.
	PingEvery time.Duration
	// Deadline of each call. The tests use a long one: a call that times out leaves its
	// spans unknown, which weakens what a test can assert about them.
	Deadline time.Duration
}

// Load drives pairs of agents: each pair's transactions are sent by one goroutine, one
// batch at a time per agent, so an agent's acknowledged spans are in the order apmkit took
// them. A failed call is recorded and the load goes on, as a real agent drops the batch
// and goes on.
type Load struct {
	opts   LoadOptions
	ledger *Ledger
	agents []*Agent
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// StartLoad connects and registers every agent (opening their ping sessions when asked)
// and starts sending.
func StartLoad(ctx context.Context, opts LoadOptions) (*Load, error) {
	if opts.Pairs < 1 || opts.Rate <= 0 || opts.BatchSize < 1 || opts.Deadline <= 0 {
		return nil, errors.New("faulttest: load: pairs, rate, batch size and deadline must be > 0")
	}
	l := &Load{opts: opts, ledger: NewLedger(), stop: make(chan struct{})}
	start := time.Now().UnixMilli()
	for i := range 2 * opts.Pairs {
		role := gen.Web
		if i%2 == 1 {
			role = gen.API
		}
		id := gen.Agent{ID: fmt.Sprintf("lt-%s-%d", opts.RunID, i), Name: fmt.Sprintf("%s-%d", role.App(), i), Role: role, StartTime: start}
		a, err := DialAgent(opts.Addr, id, l.ledger, opts.Deadline)
		if err != nil {
			l.closeAgents()
			return nil, err
		}
		l.agents = append(l.agents, a)
		if err := a.Handshake(ctx); err != nil {
			l.closeAgents()
			return nil, err
		}
		if opts.PingEvery > 0 {
			if err := a.OpenPing(ctx, opts.PingEvery); err != nil {
				l.closeAgents()
				return nil, err
			}
		}
	}
	for p := range opts.Pairs {
		web, api := l.agents[2*p], l.agents[2*p+1]
		g, err := gen.New(opts.Gen, web.ID, opts.Seed+uint64(p))
		if err != nil {
			l.closeAgents()
			return nil, err
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.runPair(ctx, g, web, api, time.Duration(float64(time.Second)*float64(opts.Pairs)/opts.Rate))
		}()
	}
	return l, nil
}

// runPair produces a transaction every interval and sends full batches; what is left is
// sent when the load stops. Each batch waits for its answer before the next one goes.
func (l *Load) runPair(ctx context.Context, g *gen.Generator, web, api *Agent, interval time.Duration) {
	var webBuf, apiBuf []*pb.PSpanMessage
	flush := func(a *Agent, buf *[]*pb.PSpanMessage, min int) {
		if len(*buf) >= min && len(*buf) > 0 {
			_ = a.SendBatch(ctx, *buf) // recorded in the ledger
			*buf = nil
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			flush(web, &webBuf, 1)
			flush(api, &apiBuf, 1)
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tx := g.Next(time.Now().UnixMilli(), &api.ID)
		webBuf = append(webBuf, tx.Own...)
		apiBuf = append(apiBuf, tx.Callee...)
		flush(web, &webBuf, l.opts.BatchSize)
		flush(api, &apiBuf, l.opts.BatchSize)
	}
}

// Ledger is what apmkit answered so far.
func (l *Load) Ledger() *Ledger { return l.ledger }

// Agents are the load's agents (web, api, web, api...).
func (l *Load) Agents() []*Agent { return l.agents }

// Stop stops producing, sends the partial batches, waits for their answers, closes the
// ping sessions (returning their errors) and the connections. It is idempotent.
func (l *Load) Stop() error {
	var errs []error
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		for _, a := range l.agents {
			if err := a.ClosePing(); err != nil {
				errs = append(errs, fmt.Errorf("agent %s: %w", a.ID.ID, err))
			}
		}
		l.closeAgents()
	})
	return errors.Join(errs...)
}

func (l *Load) closeAgents() {
	for _, a := range l.agents {
		a.Close()
	}
}
