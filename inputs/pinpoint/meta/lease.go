package meta

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// An agent run's entries (its record and metadata) live TTL after they were last written,
// and agents send them only once per run, so the entries of a live agent must be written
// again now and then. Each agent run seen by the server holds a lease: Touch, on the call
// path, only marks it seen (an atomic flag, no lock, no I/O), and a background refresher
// rewrites the entries of the runs seen since their last refresh once every TTL/4. A run
// unseen for TTL/4 loses its lease (its entries then expire TTL after their last refresh;
// if it comes back it gets a new lease and a refresh).
//
// The refresher is one goroutine (Start, Stop), the lease table is bounded (the oldest
// leases go first when it is full) and a pass rewrites at most maxRefreshPerPass runs, the
// ones refreshed longest ago first.

// lease is one agent run's.
type lease struct {
	seen atomic.Bool // set by Touch; the refresher takes it
	// mu is held while the run's entries are rewritten and by the writes of new entries
	// of the run, so a rewrite never puts back a value older than a concurrent write.
	mu sync.Mutex

	// Owned by the refresher.
	lastSeen  time.Time
	refreshed time.Time // zero: not by this process yet
}

// leases is the lease table.
type leases struct {
	m        sync.Map // AgentKey -> *lease
	n        atomic.Int64
	max      int
	overflow atomic.Int64 // runs not leased because the table was full
}

// maxRefreshPerPass bounds a refresher pass: after a restart every run is due at once.
const maxRefreshPerPass = 1000

// refreshEvery is how often the refresher looks: often enough for TTL/4, rarely enough to
// cost nothing.
func refreshEvery(ttl time.Duration) time.Duration {
	return min(max(ttl/16, 10*time.Millisecond), time.Minute)
}

// Touch marks an agent run as seen: its entries are kept alive as long as it is seen at
// least once every TTL/4. It is cheap enough for every message: the refresh runs in the
// background.
func (s *Store) Touch(k AgentKey) {
	if s.opts.TTL <= 0 {
		return
	}
	if l := s.lease(k); l != nil && !l.seen.Load() {
		l.seen.Store(true)
	}
}

// lease returns the lease of a run, making it on first sight; nil when the table is full.
func (s *Store) lease(k AgentKey) *lease {
	if v, ok := s.leases.m.Load(k); ok {
		return v.(*lease)
	}
	if s.leases.n.Load() >= int64(s.leases.max) {
		s.leases.overflow.Add(1)
		return nil
	}
	l := &lease{}
	l.seen.Store(true)
	v, loaded := s.leases.m.LoadOrStore(k, l)
	if !loaded {
		s.leases.n.Add(1)
	}
	return v.(*lease)
}

// lockRun serializes a write of a run's entries with the refresh of that run.
func (s *Store) lockRun(k AgentKey) func() {
	if s.opts.TTL <= 0 {
		return func() {}
	}
	l := s.lease(k)
	if l == nil {
		return func() {} // not leased, so not refreshed either
	}
	l.mu.Lock()
	return l.mu.Unlock
}

// LeaseStats is the lease table for tests and tools.
type LeaseStats struct {
	Leases   int   // agent runs holding a lease
	Overflow int64 // touches of runs not leased because the table was full
}

// Leases returns the lease table's size.
func (s *Store) Leases() LeaseStats {
	return LeaseStats{Leases: int(s.leases.n.Load()), Overflow: s.leases.overflow.Load()}
}

// RefreshLeases is one pass of the refresher, as of Options.Now: it rewrites with a fresh
// TTL the entries of the runs seen since their last refresh that were refreshed TTL/4 ago
// or more (or not by this process yet), at most maxRefreshPerPass, and forgets the runs
// unseen for TTL/4 and, when the table is full, the ones seen longest ago. It returns how
// many runs it refreshed.
func (s *Store) RefreshLeases() int { return s.refreshPass(nil) }

// refreshPass is RefreshLeases; it ends early, between two runs, when quit closes.
func (s *Store) refreshPass(quit <-chan struct{}) int {
	if s.opts.TTL <= 0 {
		return 0
	}
	s.passMu.Lock()
	defer s.passMu.Unlock()
	now := s.opts.Now()
	period := s.opts.TTL / 4
	type entry struct {
		k AgentKey
		l *lease
	}
	var all, due []entry
	s.leases.m.Range(func(key, v any) bool {
		k, l := key.(AgentKey), v.(*lease)
		if l.seen.Swap(false) {
			l.lastSeen = now
		}
		if now.Sub(l.lastSeen) >= period {
			s.forget(k)
			return true
		}
		all = append(all, entry{k, l})
		if l.refreshed.IsZero() || now.Sub(l.refreshed) >= period {
			due = append(due, entry{k, l})
		}
		return true
	})
	if over := len(all) - s.leases.max*9/10; over > 0 && s.leases.overflow.Load() > 0 {
		// Runs were turned away: make room, the runs seen longest ago first.
		slices.SortFunc(all, func(a, b entry) int { return a.l.lastSeen.Compare(b.l.lastSeen) })
		for _, e := range all[:over] {
			s.forget(e.k)
		}
	}
	slices.SortFunc(due, func(a, b entry) int { return a.l.refreshed.Compare(b.l.refreshed) })
	due = due[:min(len(due), maxRefreshPerPass)]
	for i, e := range due {
		select {
		case <-quit:
			return i
		default:
		}
		e.l.mu.Lock()
		s.refresh(agentPrefix(prefixAgent, e.k))
		s.refresh(agentPrefix(prefixMeta, e.k))
		e.l.refreshed = now
		e.l.mu.Unlock()
	}
	return len(due)
}

func (s *Store) forget(k AgentKey) {
	if _, ok := s.leases.m.LoadAndDelete(k); ok {
		s.leases.n.Add(-1)
	}
}

// refresh re-sets every entry under prefix with a fresh TTL; failures leave the old TTL.
func (s *Store) refresh(prefix []byte) {
	type kv struct{ k, v []byte }
	var entries []kv
	_ = s.db.Scan(prefix, func(k, v []byte) error {
		entries = append(entries, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
		return nil
	})
	for _, e := range entries {
		_ = s.db.Set(e.k, e.v, s.opts.TTL)
	}
}

// Start starts the lease refresher. Stop ends it.
func (s *Store) Start() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.quit != nil || s.opts.TTL <= 0 {
		return
	}
	s.quit, s.done = make(chan struct{}), make(chan struct{})
	go s.refreshLoop(s.quit, s.done)
}

// Stop ends the refresher and waits for it (a pass in progress finishes first). It is
// idempotent and safe without Start.
func (s *Store) Stop() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.quit == nil {
		return
	}
	close(s.quit)
	<-s.done
	s.quit, s.done = nil, nil
}

func (s *Store) refreshLoop(quit, done chan struct{}) {
	defer close(done)
	every := s.opts.RefreshEvery
	if every <= 0 {
		every = refreshEvery(s.opts.TTL)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.refreshPass(quit)
		select {
		case <-quit:
			return
		case <-t.C:
		}
	}
}
