package faulttest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// ChurnOptions shape a Churn.
type ChurnOptions struct {
	Addr string
	// Agents run at once; each runs sessions one after the other until Sessions were
	// started in all.
	Agents   int
	Sessions int
	// SpansPerSession transactions are sent in one batch per session.
	SpansPerSession int
	// Hold is the longest a session stays connected after its batch (random in [0, Hold)),
	// so sessions overlap the way reconnecting agents do.
	Hold     time.Duration
	RunID    string
	Seed     uint64
	Deadline time.Duration
	// Warmup, when set, makes every agent run one session first; Warmup is called once
	// they all ended (no agent connected), and the Sessions sessions start when it returns.
	// A test takes its baseline there: what apmkit keeps per agent run exists by then.
	Warmup func()
}

// ChurnResult is what a churn did.
type ChurnResult struct {
	Warmup   int64    `json:"warmup_sessions"`
	Sessions int64    `json:"sessions"` // sessions after the warm-up: connects
	Failed   int64    `json:"failed"`   // sessions that hit an error, warm-up included
	Seconds  float64  `json:"seconds"`  // of the sessions after the warm-up
	Ledger   Snapshot `json:"ledger"`
}

// Churn makes opts.Agents agents connect and disconnect: in each session an agent
// connects, registers, sends its metadata, opens its ping session, sends one batch, holds
// the connection a moment and disconnects, as an agent does when its connection is cut
// (a network blip, a load balancer, a collector restart). Each agent keeps its identity
// (one agent run) and its transaction sequence across sessions, so what apmkit rightly
// keeps per agent run (metadata, per-agent counters) is the same after the churn as after
// the warm-up, and only what a connection leaks can grow. It stops when opts.Sessions
// sessions were started, so the amount of churn does not depend on the machine's speed.
func Churn(ctx context.Context, opts ChurnOptions) (*ChurnResult, error) {
	if opts.Agents < 1 || opts.Sessions < 1 || opts.SpansPerSession < 1 || opts.Deadline <= 0 {
		return nil, errors.New("faulttest: churn: agents, sessions, spans per session and deadline must be > 0")
	}
	ledger := NewLedger()
	res := &ChurnResult{}
	var started, failed atomic.Int64
	startTime := time.Now().UnixMilli()
	var warmed sync.WaitGroup // every agent's warm-up session ended
	release := make(chan struct{})
	if opts.Warmup != nil {
		warmed.Add(opts.Agents)
	}
	var wg sync.WaitGroup
	for i := range opts.Agents {
		wg.Go(func() {
			role := gen.Web
			if i%2 == 1 {
				role = gen.API
			}
			id := gen.Agent{ID: fmt.Sprintf("ch-%s-%d", opts.RunID, i), Name: fmt.Sprintf("churn-%d", i), Role: role, StartTime: startTime}
			g, err := gen.New(gen.Options{Events: gen.MinEvents}, id, opts.Seed+uint64(i))
			if err != nil {
				panic(err) // constant options, validated by gen's tests
			}
			rng := rand.New(rand.NewPCG(opts.Seed, uint64(i)))
			session := func(hold time.Duration) {
				if err := churnSession(ctx, opts, id, g, ledger, hold); err != nil {
					failed.Add(1)
				}
			}
			if opts.Warmup != nil {
				session(0)
				warmed.Done()
			}
			select {
			case <-release:
			case <-ctx.Done():
				return
			}
			for started.Add(1) <= int64(opts.Sessions) && ctx.Err() == nil {
				hold := time.Duration(0)
				if opts.Hold > 0 {
					hold = time.Duration(rng.Int64N(int64(opts.Hold)))
				}
				session(hold)
			}
		})
	}
	if opts.Warmup != nil {
		warmed.Wait()
		if ctx.Err() == nil {
			opts.Warmup()
		}
		res.Warmup = int64(opts.Agents)
	}
	begin := time.Now()
	close(release)
	wg.Wait()
	res.Sessions = min(started.Load(), int64(opts.Sessions))
	res.Failed = failed.Load()
	res.Seconds = time.Since(begin).Seconds()
	res.Ledger = ledger.Snapshot()
	return res, ctx.Err()
}

func churnSession(ctx context.Context, opts ChurnOptions, id gen.Agent, g *gen.Generator, ledger *Ledger, hold time.Duration) error {
	a, err := DialAgent(opts.Addr, id, ledger, opts.Deadline)
	if err != nil {
		ledger.fail(err)
		return err
	}
	defer a.Close()
	if err := a.Handshake(ctx); err != nil {
		return err
	}
	// The ping interval is longer than any session: the session's one ping is the
	// answered first one, and the stream stays open until the agent leaves.
	if err := a.OpenPing(ctx, time.Hour); err != nil {
		return err
	}
	var msgs []*pb.PSpanMessage
	for range opts.SpansPerSession {
		msgs = append(msgs, g.Next(time.Now().UnixMilli(), nil).Own...)
	}
	if err := a.SendBatch(ctx, msgs); err != nil {
		return err
	}
	select {
	case <-time.After(hold):
	case <-ctx.Done():
	}
	return a.ClosePing()
}
