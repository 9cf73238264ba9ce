package meta

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

func (c *countingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sets
}

// storeWithRun is a store with TTL ttl holding frontend's record and two metadata entries
// (three keys).
func storeWithRun(t *testing.T, ttl time.Duration) (*Store, *countingStore, *clock) {
	t.Helper()
	s, db, clk := newStore(t, ttl)
	if err := s.PutAgent(Sender{AgentKey: frontend, ApplicationName: "frontend"}, &pb.PAgentInfo{Hostname: "vm"}); err != nil {
		t.Fatal(err)
	}
	_ = s.PutAPI(frontend, &pb.PApiMetaData{ApiId: 1, ApiInfo: "a"})
	_ = s.PutSQL(frontend, &pb.PSqlMetaData{SqlId: 1, Sql: "select 1"})
	return s, db, clk
}

// TestTouchIsCheap: marking a run seen writes nothing; the refresh happens in a pass.
func TestTouchIsCheap(t *testing.T) {
	s, db, _ := storeWithRun(t, time.Hour)
	before := db.count()
	for range 1000 {
		s.Touch(frontend)
	}
	if n := db.count() - before; n != 0 {
		t.Fatalf("Touch wrote %d entries", n)
	}
}

// TestLeaseRefreshesSeenRuns walks a run's lease through time: refreshed at once (never by
// this process yet), not again before TTL/4, again after TTL/4 if seen meanwhile, and
// forgotten once unseen for TTL/4; seen again, it is leased and refreshed again.
func TestLeaseRefreshesSeenRuns(t *testing.T) {
	const ttl = time.Hour
	s, db, clk := storeWithRun(t, ttl)
	refreshed := func(wantRuns, wantWrites int) {
		t.Helper()
		before := db.count()
		if n := s.RefreshLeases(); n != wantRuns {
			t.Fatalf("%d runs refreshed, want %d", n, wantRuns)
		}
		if n := db.count() - before; n != wantWrites {
			t.Fatalf("%d entries rewritten, want %d", n, wantWrites)
		}
	}
	s.Touch(frontend)
	refreshed(1, 3) // its record and two metadata entries
	clk.Add(ttl / 8)
	s.Touch(frontend)
	refreshed(0, 0) // refreshed less than TTL/4 ago
	clk.Add(ttl / 8)
	refreshed(1, 3) // seen since, and TTL/4 passed
	clk.Add(ttl / 4)
	refreshed(0, 0) // unseen for TTL/4: forgotten
	if n := s.Leases().Leases; n != 0 {
		t.Fatalf("%d leases after the run went quiet", n)
	}
	s.Touch(frontend)
	refreshed(1, 3)
}

// TestLeasedRunOutlivesTTL: a run seen now and then keeps its entries however long it
// lives; an unseen one's expire.
func TestLeasedRunOutlivesTTL(t *testing.T) {
	const ttl = time.Hour
	s, _, clk := storeWithRun(t, ttl)
	_ = s.PutAPI(backend, &pb.PApiMetaData{ApiId: 1, ApiInfo: "gone"})
	for range 40 { // 10 hours
		clk.Add(ttl / 4)
		s.Touch(frontend)
		s.RefreshLeases()
	}
	fresh, err := NewStore(s.db, Options{TTL: ttl, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fresh.API(frontend, 1); !ok {
		t.Fatal("a live run's metadata expired")
	}
	if _, ok := fresh.API(backend, 1); ok {
		t.Fatal("an unseen run's metadata did not expire")
	}
}

// TestLeaseTableIsBounded: beyond MaxLeases runs are not leased (counted); a pass makes
// room, the runs seen longest ago first.
func TestLeaseTableIsBounded(t *testing.T) {
	s, _, clk := newStore(t, time.Hour)
	s.leases.max = 10
	run := func(i int) AgentKey { return AgentKey{AgentID: fmt.Sprintf("agent-%d", i), StartTime: 1} }
	for i := range 10 {
		s.Touch(run(i))
		s.RefreshLeases()
		clk.Add(time.Second)
	}
	s.Touch(run(10))
	if st := s.Leases(); st.Leases != 10 || st.Overflow != 1 {
		t.Fatalf("%+v", st)
	}
	s.RefreshLeases()
	if st := s.Leases(); st.Leases != 9 {
		t.Fatalf("after the pass: %+v", st)
	}
	if _, ok := s.leases.m.Load(run(0)); ok {
		t.Fatal("the run seen longest ago kept its lease")
	}
	s.Touch(run(10))
	if _, ok := s.leases.m.Load(run(10)); !ok {
		t.Fatal("a new run found no room")
	}
}

// pausingStore pauses the first Scan of the agent record's prefix, after it read, until
// resume closes.
type pausingStore struct {
	cache.Store
	prefix  []byte
	scanned chan struct{}
	resume  chan struct{}
	once    sync.Once
}

func (p *pausingStore) Scan(prefix []byte, fn func(k, v []byte) error) error {
	err := p.Store.Scan(prefix, fn)
	if bytes.Equal(prefix, p.prefix) {
		p.once.Do(func() {
			close(p.scanned)
			<-p.resume
		})
	}
	return err
}

// TestRefreshNeverRestoresAnOldValue: a run's record written while the refresher rewrites
// the run's entries is not overwritten with what the refresher read before it.
func TestRefreshNeverRestoresAnOldValue(t *testing.T) {
	clk := &clock{now: time.Now()}
	db := &pausingStore{Store: cache.NewMemory(cache.Config{}).Namespace("p"), prefix: agentPrefix(prefixAgent, frontend),
		scanned: make(chan struct{}), resume: make(chan struct{})}
	s, err := NewStore(db, Options{TTL: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	sender := Sender{AgentKey: frontend, ApplicationName: "frontend"}
	_ = s.PutAgent(sender, &pb.PAgentInfo{Pid: 1})
	s.Touch(frontend)
	var wg sync.WaitGroup
	wg.Go(func() { s.RefreshLeases() })
	<-db.scanned // the refresher read pid 1 and is about to write it back
	put := make(chan struct{})
	go func() {
		_ = s.PutAgent(sender, &pb.PAgentInfo{Pid: 2})
		close(put)
	}()
	select {
	case <-put: // written in the middle of the refresh: the bug this test is about
	case <-time.After(100 * time.Millisecond): // waits for the refresh, as it should
	}
	close(db.resume)
	wg.Wait()
	<-put
	fresh, _ := NewStore(db, Options{TTL: time.Hour, Now: clk.Now})
	if rec, ok := fresh.Agent(frontend); !ok || rec.Info.GetPid() != 2 {
		t.Fatalf("record %v %v, want the last written (pid 2)", rec.Info, ok)
	}
}

// TestRefresherRunsAndStops: the background refresher refreshes on its own and Stop ends
// it (goleak checks no goroutine is left); Start and Stop are idempotent.
func TestRefresherRunsAndStops(t *testing.T) {
	s, db, clk := storeWithRun(t, time.Hour)
	s.opts.RefreshEvery = time.Millisecond
	s.Stop() // before Start: nothing to do
	// Counted and touched before Start: a pass that ran before the count was taken would
	// have refreshed the run, and the fake clock never makes it due again.
	before := db.count()
	s.Touch(frontend)
	s.Start()
	s.Start()
	deadline := time.Now().Add(30 * time.Second)
	for db.count() == before {
		if time.Now().After(deadline) {
			t.Fatal("the refresher did not refresh the run within 30s")
		}
		time.Sleep(time.Millisecond)
	}
	clk.Add(time.Minute)
	s.Stop()
	s.Stop()
}
