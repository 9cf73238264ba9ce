package meta

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// Key layout in the input's cache namespace (big-endian numbers so an agent's keys sort
// together and can be scanned by prefix):
//
//	'r' agentId 0x00 startTime(8)                       -> AgentRecord (JSON)
//	'm' agentId 0x00 startTime(8) kind(1) id(4|8|bytes) -> metadata value
const (
	prefixAgent = 'r'
	prefixMeta  = 'm'
)

// Options tune a Store.
type Options struct {
	// TTL is how long an agent run's entries live after it was last seen (metadata_ttl).
	TTL time.Duration
	// CacheEntries bounds the in-memory LRU in front of the cache.
	CacheEntries int
	// OnPut is called when new metadata of an agent run is known to this process (e.g. to
	// release spans that waited for it), before it is written to the cache. It must not block.
	OnPut func(AgentKey)
	// OnStored is called after new metadata of an agent run was written to the cache (e.g.
	// to tell other replicas sharing the cache). It must not block for long.
	OnStored func(AgentKey)
	// Now is the clock (tests).
	Now func() time.Time
	// RefreshEvery is how often the lease refresher looks for runs to refresh (Start);
	// 0 = TTL/16, between 10 ms and a minute.
	RefreshEvery time.Duration
	// MaxLeases bounds the agent runs whose entries are kept alive; 0 = CacheEntries/10.
	MaxLeases int
}

// Store persists agent records and metadata and serves lookups through an LRU.
type Store struct {
	db     cache.Store
	opts   Options
	lru    *lru.Cache[string, any]
	leases leases // agent runs whose entries are kept alive (lease.go)

	passMu     sync.Mutex // one refresher pass at a time
	runMu      sync.Mutex // Start and Stop
	quit, done chan struct{}
}

// NewStore returns a store over db.
func NewStore(db cache.Store, opts Options) (*Store, error) {
	if opts.CacheEntries <= 0 {
		opts.CacheEntries = 100_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxLeases <= 0 {
		opts.MaxLeases = max(opts.CacheEntries/10, 1)
	}
	c, err := lru.New[string, any](opts.CacheEntries)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, opts: opts, lru: c}
	s.leases.max = opts.MaxLeases
	return s, nil
}

func agentPrefix(prefix byte, k AgentKey) []byte {
	b := make([]byte, 0, 1+len(k.AgentID)+1+8+1+8)
	b = append(b, prefix)
	b = append(b, k.AgentID...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, uint64(k.StartTime))
}

func metaKey(k AgentKey, kind Kind, id []byte) []byte {
	return append(append(agentPrefix(prefixMeta, k), byte(kind)), id...)
}

func int32ID(id int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(id)) }
func int64ID(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// put stores val unless the LRU already holds the same value (Java hedges metadata calls
// three times: repeats must not cost three writes).
func (s *Store) put(agent AgentKey, key []byte, decoded any, val []byte, same func(any) bool) error {
	if old, ok := s.lru.Get(string(key)); ok && same(old) {
		return nil
	}
	// The LRU gets the value even when the cache refuses it (full): this process still
	// resolves the names; only a restart would lose them, and the error is counted.
	defer s.lockRun(agent)()
	s.lru.Add(string(key), decoded)
	if s.opts.OnPut != nil {
		s.opts.OnPut(agent)
	}
	if err := s.db.Set(key, val, s.opts.TTL); err != nil {
		return fmt.Errorf("meta: store %s: %w", agent, err)
	}
	if s.opts.OnStored != nil {
		s.opts.OnStored(agent)
	}
	return nil
}

// get returns the decoded value from the LRU or the cache.
func (s *Store) get(key []byte, decode func([]byte) (any, error)) (any, bool) {
	if v, ok := s.lru.Get(string(key)); ok {
		return v, true
	}
	raw, err := s.db.Get(key)
	if err != nil || raw == nil {
		return nil, false
	}
	v, err := decode(raw)
	if err != nil {
		return nil, false
	}
	s.lru.Add(string(key), v)
	return v, true
}

// PutAPI stores a PApiMetaData.
func (s *Store) PutAPI(agent AgentKey, m *pb.PApiMetaData) error {
	api := API{Info: m.GetApiInfo(), Line: m.GetLine(), Type: m.GetType(), Location: m.GetLocation()}
	raw, _ := json.Marshal(api)
	return s.put(agent, metaKey(agent, KindAPI, int32ID(m.GetApiId())), api, raw, func(old any) bool { return old == api })
}

// API looks up an api id of an agent run.
func (s *Store) API(agent AgentKey, id int32) (API, bool) {
	v, ok := s.get(metaKey(agent, KindAPI, int32ID(id)), func(raw []byte) (any, error) {
		var a API
		err := json.Unmarshal(raw, &a)
		return a, err
	})
	if !ok {
		return API{}, false
	}
	return v.(API), true
}

func (s *Store) putText(agent AgentKey, kind Kind, id []byte, text string) error {
	return s.put(agent, metaKey(agent, kind, id), text, []byte(text), func(old any) bool { return old == text })
}

func (s *Store) text(agent AgentKey, kind Kind, id []byte) (string, bool) {
	v, ok := s.get(metaKey(agent, kind, id), func(raw []byte) (any, error) { return string(raw), nil })
	if !ok {
		return "", false
	}
	return v.(string), true
}

// PutSQL stores a PSqlMetaData.
func (s *Store) PutSQL(agent AgentKey, m *pb.PSqlMetaData) error {
	return s.putText(agent, KindSQL, int32ID(m.GetSqlId()), m.GetSql())
}

// SQL looks up a sql id.
func (s *Store) SQL(agent AgentKey, id int32) (string, bool) {
	return s.text(agent, KindSQL, int32ID(id))
}

// PutSQLUID stores a PSqlUidMetaData.
func (s *Store) PutSQLUID(agent AgentKey, m *pb.PSqlUidMetaData) error {
	if len(m.GetSqlUid()) == 0 {
		return errors.New("meta: sqlUid is empty")
	}
	return s.putText(agent, KindSQLUID, m.GetSqlUid(), m.GetSql())
}

// SQLUID looks up a sql uid.
func (s *Store) SQLUID(agent AgentKey, uid []byte) (string, bool) {
	return s.text(agent, KindSQLUID, uid)
}

// PutString stores a PStringMetaData.
func (s *Store) PutString(agent AgentKey, m *pb.PStringMetaData) error {
	return s.putText(agent, KindString, int32ID(m.GetStringId()), m.GetStringValue())
}

// String looks up a string id.
func (s *Store) String(agent AgentKey, id int32) (string, bool) {
	return s.text(agent, KindString, int32ID(id))
}

// PutExceptions stores each PException of a PExceptionMetaData under its chain id
// (exceptionId, which annotation -52 on the throwing event carries) and its depth in the
// chain.
func (s *Store) PutExceptions(agent AgentKey, m *pb.PExceptionMetaData) error {
	var errs []error
	for _, e := range m.GetExceptions() {
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key := metaKey(agent, KindException, binary.BigEndian.AppendUint32(int64ID(e.GetExceptionId()), uint32(e.GetExceptionDepth())))
		if old, err := s.db.Get(key); err == nil && string(old) == string(raw) {
			continue // a hedged repeat
		}
		unlock := s.lockRun(agent)
		err = s.db.Set(key, raw, s.opts.TTL)
		unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("meta: store %s: %w", agent, err))
			continue
		}
		s.lru.Remove(string(metaKey(agent, KindException, int64ID(e.GetExceptionId()))))
		if s.opts.OnPut != nil {
			s.opts.OnPut(agent)
		}
	}
	return errors.Join(errs...)
}

// Exceptions returns an exception chain ordered by depth. Callers must not modify it.
func (s *Store) Exceptions(agent AgentKey, exceptionID int64) ([]*pb.PException, bool) {
	chainKey := metaKey(agent, KindException, int64ID(exceptionID))
	if v, ok := s.lru.Get(string(chainKey)); ok {
		return v.([]*pb.PException), true
	}
	var chain []*pb.PException
	err := s.db.Scan(chainKey, func(_, val []byte) error {
		e := &pb.PException{}
		if err := proto.Unmarshal(val, e); err != nil {
			return nil // skip a damaged entry, keep the rest of the chain
		}
		chain = append(chain, e)
		return nil
	})
	if err != nil || len(chain) == 0 {
		return nil, false
	}
	sort.Slice(chain, func(i, j int) bool { return chain[i].GetExceptionDepth() < chain[j].GetExceptionDepth() })
	s.lru.Add(string(chainKey), chain)
	return chain, true
}
