package meta

import (
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingStore counts writes to see that repeats cost nothing.
type countingStore struct {
	cache.Store
	mu   sync.Mutex
	sets int
}

func (c *countingStore) Set(k, v []byte, ttl time.Duration) error {
	c.mu.Lock()
	c.sets++
	c.mu.Unlock()
	return c.Store.Set(k, v, ttl)
}

func newStore(t *testing.T, ttl time.Duration) (*Store, *countingStore, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
	db := &countingStore{Store: cache.NewMemory(cache.Config{}, cache.WithClock(clk.Now)).Namespace("pinpoint")}
	s, err := NewStore(db, Options{TTL: ttl, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, db, clk
}

var (
	frontend = AgentKey{AgentID: "frontend-01", StartTime: 1795417119878}
	backend  = AgentKey{AgentID: "backend-01", StartTime: 1795417119888}
)

func TestIdsAreScopedPerAgentRun(t *testing.T) {
	s, _, _ := newStore(t, time.Hour)
	_ = s.PutAPI(frontend, &pb.PApiMetaData{ApiId: 1, ApiInfo: "frontend handler"})
	_ = s.PutAPI(backend, &pb.PApiMetaData{ApiId: 1, ApiInfo: "backend handler", Line: 7, Type: 100})
	nextRun := AgentKey{AgentID: frontend.AgentID, StartTime: frontend.StartTime + 1}
	if a, ok := s.API(frontend, 1); !ok || a.Info != "frontend handler" {
		t.Fatalf("frontend api 1 = %+v %v", a, ok)
	}
	if a, ok := s.API(backend, 1); !ok || a != (API{Info: "backend handler", Line: 7, Type: 100}) {
		t.Fatalf("backend api 1 = %+v %v", a, ok)
	}
	if _, ok := s.API(nextRun, 1); ok {
		t.Fatal("an id resolved for another run of the agent")
	}
	// An agent id that is a prefix of another must not see its entries.
	short := AgentKey{AgentID: "frontend-0", StartTime: frontend.StartTime}
	if _, ok := s.API(short, 1); ok {
		t.Fatal("prefix agent id resolved")
	}
}

func TestEveryKindRoundTrips(t *testing.T) {
	s, _, _ := newStore(t, time.Hour)
	_ = s.PutSQL(backend, &pb.PSqlMetaData{SqlId: 3, Sql: "SELECT * FROM users WHERE id = ?"})
	_ = s.PutSQLUID(backend, &pb.PSqlUidMetaData{SqlUid: []byte{1, 2, 3}, Sql: "UPDATE t SET a = ?"})
	_ = s.PutString(backend, &pb.PStringMetaData{StringId: 9, StringValue: "java.lang.IllegalStateException"})
	if v, ok := s.SQL(backend, 3); !ok || v != "SELECT * FROM users WHERE id = ?" {
		t.Fatalf("sql %q %v", v, ok)
	}
	if v, ok := s.SQLUID(backend, []byte{1, 2, 3}); !ok || v != "UPDATE t SET a = ?" {
		t.Fatalf("sqluid %q %v", v, ok)
	}
	if v, ok := s.String(backend, 9); !ok || v != "java.lang.IllegalStateException" {
		t.Fatalf("string %q %v", v, ok)
	}
	if err := s.PutSQLUID(backend, &pb.PSqlUidMetaData{Sql: "x"}); err == nil {
		t.Fatal("empty sqlUid accepted")
	}
}

func TestExceptionChainsInDepthOrder(t *testing.T) {
	s, _, _ := newStore(t, time.Hour)
	_ = s.PutExceptions(backend, &pb.PExceptionMetaData{Exceptions: []*pb.PException{
		{ExceptionId: 5, ExceptionDepth: 1, ExceptionClassName: "Cause"},
		{ExceptionId: 5, ExceptionDepth: 0, ExceptionClassName: "Top"},
		{ExceptionId: 6, ExceptionDepth: 0, ExceptionClassName: "Other"},
	}})
	chain, ok := s.Exceptions(backend, 5)
	if !ok || len(chain) != 2 || chain[0].GetExceptionClassName() != "Top" || chain[1].GetExceptionClassName() != "Cause" {
		t.Fatalf("chain %v %v", chain, ok)
	}
	// A deeper cause arriving later joins the cached chain.
	_ = s.PutExceptions(backend, &pb.PExceptionMetaData{Exceptions: []*pb.PException{{ExceptionId: 5, ExceptionDepth: 2, ExceptionClassName: "Root"}}})
	if chain, _ = s.Exceptions(backend, 5); len(chain) != 3 || chain[2].GetExceptionClassName() != "Root" {
		t.Fatalf("chain after a new cause %v", chain)
	}
}

func TestRepeatsAreIdempotentAndCheap(t *testing.T) {
	var puts []AgentKey
	clk := &clock{now: time.Now()}
	db := &countingStore{Store: cache.NewMemory(cache.Config{}).Namespace("p")}
	s, err := NewStore(db, Options{TTL: time.Hour, Now: clk.Now, OnPut: func(k AgentKey) { puts = append(puts, k) }})
	if err != nil {
		t.Fatal(err)
	}
	m := &pb.PApiMetaData{ApiId: 1, ApiInfo: "a"}
	for i := 0; i < 3; i++ { // Java hedges metadata calls three times
		if err := s.PutAPI(frontend, m); err != nil {
			t.Fatal(err)
		}
	}
	exc := &pb.PExceptionMetaData{Exceptions: []*pb.PException{{ExceptionId: 1, ExceptionClassName: "E"}}}
	for i := 0; i < 3; i++ {
		_ = s.PutExceptions(frontend, exc)
	}
	if db.sets != 2 || len(puts) != 2 {
		t.Fatalf("%d writes and %d notifications for 2 distinct items", db.sets, len(puts))
	}
	_ = s.PutAPI(frontend, &pb.PApiMetaData{ApiId: 1, ApiInfo: "changed"})
	if a, _ := s.API(frontend, 1); a.Info != "changed" {
		t.Fatal("a changed value was not stored")
	}
}

// TestUnseenRunsExpire: entries live TTL after the run was last seen; Touch and the
// lease refresher keep a live agent's entries.
func TestUnseenRunsExpire(t *testing.T) {
	s, _, clk := newStore(t, 10*24*time.Hour)
	_ = s.PutAgent(Sender{AgentKey: frontend, ApplicationName: "frontend"}, &pb.PAgentInfo{Hostname: "vm"})
	_ = s.PutAPI(frontend, &pb.PApiMetaData{ApiId: 1, ApiInfo: "live"})
	_ = s.PutAPI(backend, &pb.PApiMetaData{ApiId: 1, ApiInfo: "gone"})
	for day := 0; day < 30; day++ {
		clk.Add(24 * time.Hour)
		s.Touch(frontend) // the frontend keeps sending
		s.RefreshLeases()
	}
	fresh, err := NewStore(s.db, Options{TTL: s.opts.TTL, Now: clk.Now}) // empty LRU: read the cache
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := fresh.API(frontend, 1); !ok || a.Info != "live" {
		t.Fatal("metadata of a live agent expired")
	}
	if rec, ok := fresh.Agent(frontend); !ok || rec.Info.GetHostname() != "vm" {
		t.Fatal("agent record of a live agent expired")
	}
	if _, ok := fresh.API(backend, 1); ok {
		t.Fatal("metadata of an agent unseen for 30 days did not expire")
	}
}

func TestAgentsList(t *testing.T) {
	s, _, _ := newStore(t, time.Hour)
	for _, k := range []AgentKey{frontend, backend} {
		if err := s.PutAgent(Sender{AgentKey: k, ApplicationName: "app", AgentName: k.AgentID}, &pb.PAgentInfo{Pid: 42}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.Agents()
	if err != nil || len(recs) != 2 || recs[0].Info.GetPid() != 42 {
		t.Fatalf("agents %+v %v", recs, err)
	}
}
