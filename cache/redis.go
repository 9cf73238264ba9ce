package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apmkit/apmkit/internal/secret"
)

// Redis is the Redis Backend: the cache in a Redis (or Valkey) server, standalone, behind
// Sentinel or a Cluster, which several apmkit replicas share. See redisKeys for the key
// layout: namespaces are namespace.go's, so keys are binary and isolated as with badger.
//
// Scan reads the prefix's keys from a sorted index (ZRANGEBYLEX, in pages) rather than
// SCAN, which is unordered and walks the whole database for every prefix: Scans with a
// narrow prefix run on every span. It first lists the keys (that list is the snapshot:
// keys set during the Scan, by fn or others, are not visited; memory is the keys only,
// which capacity_mb bounds), then reads their values a page at a time (bounded bytes per
// page): a key deleted before its page is read is skipped, a value changed before it is
// read is seen changed.
//
// CapacityMB caps the bytes of apmkit's keys (namespace included) and values under the key
// prefix, as counted by apmkit in Redis itself, so every replica enforces the same cap;
// Redis' own overhead (about three times the key, for the index) is not counted. A Redis
// at its maxmemory refuses writes too; both are ErrFull. Redis must not evict apmkit's keys
// (maxmemory-policy noeviction or volatile-*): an evicted key is simply gone.
//
// When Redis does not answer within Config.RedisTimeout (down, restarting, paused, a
// failover), the backend runs on a bounded in-memory fallback (StateRedisDown, see
// fallback) and writes what it kept to Redis once it answers again (StateRedisCatchingUp).
// Calls are not retried: each waits at most about RedisTimeout, and while Redis is down the
// calls that need it fail at once.
type Redis struct {
	cfg     Config
	log     *slog.Logger
	url     string // masked, for messages
	client  redis.UniversalClient
	keys    redisKeys
	timeout time.Duration
	opts    redisOptions
	root    namespace
	gate    *opGate
	fb      *fallback

	errs                        [numRedisOps]atomic.Int64
	refusedCap, refusedFallback atomic.Int64
	replayed, replayDropped     atomic.Int64
	lastSize                    atomic.Int64 // SizeBytes' last answer, returned when Redis cannot tell

	stop chan struct{} // closed by Close to end loop
	done chan struct{} // closed by loop when it returns
}

// RedisStats is the Redis backend's part of Stats.
type RedisStats struct {
	// URL is redis_url, masked.
	URL       string `json:"url"`
	KeyPrefix string `json:"key_prefix"`
	// Errors counts the Redis calls that failed, by operation (get, set, delete, scan,
	// ping, sweep); replayed writes count as set and delete.
	Errors map[string]int64 `json:"errors"`
	// FallbackChanges and FallbackBytes are the writes kept in memory for Redis, now.
	FallbackChanges int   `json:"fallback_changes"`
	FallbackBytes   int64 `json:"fallback_bytes"`
	// Replayed counts the kept writes written to Redis; ReplayDropped those Redis refused
	// then (capacity, or an error other than being unavailable).
	Replayed      int64 `json:"replayed"`
	ReplayDropped int64 `json:"replay_dropped"`
}

// redisOp names the Redis calls whose failures are counted.
type redisOp int

const (
	opGet redisOp = iota
	opSet
	opDelete
	opScan
	opPing
	opSweep
	numRedisOps
)

func (o redisOp) String() string {
	return [numRedisOps]string{"get", "set", "delete", "scan", "ping", "sweep"}[o]
}

// Sizes of the Redis backend's bounded steps.
const (
	redisListPage    = 1000    // index entries per ZRANGEBYLEX of a Scan
	redisReadPage    = 256     // keys per readScript call of a Scan
	redisReadBudget  = 4 << 20 // bytes of values per readScript call (plus one value)
	redisSweepLimit  = 1000    // expired keys forgotten per sweep script call
	redisSweepRounds = 10      // sweep script calls per sweep at most
	redisReplayBatch = 256     // kept writes taken from the fallback at a time
)

// redisOptions are OpenRedis's RedisOptions.
type redisOptions struct {
	probeEvery time.Duration // how often a down Redis is tried again
	sweepEvery time.Duration // how often expired keys leave the index
}

// RedisOption changes how OpenRedis runs the backend.
type RedisOption func(*redisOptions)

// OpenRedis connects to cfg.RedisURL and checks that Redis answers: apmkit does not start
// on a Redis it cannot reach (the URL, the password or the network is wrong far more often
// than Redis is down just then). Outages after the start are survived (see Redis). A nil
// log discards the backend's log.
func OpenRedis(cfg Config, log *slog.Logger, opts ...RedisOption) (*Redis, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	target, err := parseRedisURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("cache: redis_url: %w", err)
	}
	def := DefaultConfig()
	prefix := cmp.Or(cfg.RedisKeyPrefix, def.RedisKeyPrefix)
	o := redisOptions{probeEvery: time.Second, sweepEvery: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Redis{
		cfg:     cfg,
		url:     secret.URL(cfg.RedisURL),
		keys:    newRedisKeys(prefix),
		timeout: cmp.Or(cfg.RedisTimeout, def.RedisTimeout),
		opts:    o,
		gate:    newOpGate(),
		fb:      newFallback(cfg.RedisFallbackMB),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.log = log.With("component", "cache", "redis", r.url)
	r.root = newNamespace(r, "")
	r.client = target.client(r.timeout)
	ctx, cancel := r.ctx()
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		_ = r.client.Close()
		return nil, fmt.Errorf("cache: redis at %s cannot be used: %w", r.url, err)
	}
	r.log.Info("cache: the cache is in redis", "key_prefix", prefix, "timeout", r.timeout)
	go r.loop()
	return r, nil
}

// Namespace implements Backend.
func (r *Redis) Namespace(name string) Store { return newNamespace(r, name) }

// MoveNamespace moves every live key of namespace from into namespace to (see Backend),
// one key at a time: another replica may see a key in both namespaces for a moment.
func (r *Redis) MoveNamespace(from, to string) (int, error) { return moveNamespace(r, from, to) }

// Get, Set, Delete and Scan work on the root namespace, Namespace("").
func (r *Redis) Get(key []byte) ([]byte, error) { return r.root.Get(key) }

func (r *Redis) Set(key, val []byte, ttl time.Duration) error { return r.root.Set(key, val, ttl) }

func (r *Redis) Delete(key []byte) error { return r.root.Delete(key) }

func (r *Redis) Scan(prefix []byte, fn func(key, val []byte) error) error {
	return r.root.Scan(prefix, fn)
}

// Close waits for the calls in progress and the background loop, gives the writes still
// kept in memory a last chance to reach Redis, and closes the connections. Every later
// call, on the backend or any namespace, returns ErrClosed. Close must not be called from
// a Scan callback.
func (r *Redis) Close() error {
	if !r.gate.close() {
		return ErrClosed
	}
	close(r.stop)
	<-r.done
	r.flushFallback()
	err := r.client.Close()
	r.fb.close()
	if err != nil {
		return fmt.Errorf("cache: close redis client: %w", err)
	}
	return nil
}

func (r *Redis) isClosed() bool { return r.gate.isClosed() }

// ctx bounds one Redis call.
func (r *Redis) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.timeout)
}

// fail counts a failed Redis call and turns its error into the backend's: ErrFull for a
// Redis at its maxmemory; ErrUnavailable, after switching to the fallback, for a Redis
// that does not answer or cannot serve now; otherwise the error (a bug, a wrong password).
func (r *Redis) fail(op redisOp, err error) error {
	r.errs[op].Add(1)
	switch {
	case redis.IsOOMError(err):
		r.refusedCap.Add(1)
		return fmt.Errorf("cache: redis %s: %w (redis is at its maxmemory: %v)", op, ErrFull, err)
	case !transient(err):
		return fmt.Errorf("cache: redis %s: %w", op, err)
	}
	if r.fb.degrade(err) {
		r.log.Warn("cache: redis is unavailable: writes are kept in memory (redis_fallback_mb) and written to redis once it answers; reads of other keys fail until then",
			"op", op.String(), "err", err)
	}
	return &unavailableError{msg: fmt.Sprintf("cache: redis %s: unavailable: %v", op, err), cause: err}
}

// transient reports whether err means Redis cannot serve now rather than refusing the
// call: no answer at all (network, timeout, no free connection, no sentinel), or a
// reply saying it is loading, failing over, busy or full of clients.
func transient(err error) bool {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return true
	}
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "ERR max number of clients"} {
		if strings.HasPrefix(reply.Error(), p) {
			return true
		}
	}
	return false
}

func (r *Redis) getFull(key []byte) ([]byte, error) {
	if !r.gate.enter() {
		return nil, ErrClosed
	}
	defer r.gate.leave()
	if val, hit, err := r.fb.get(key); hit || err != nil {
		return val, err
	}
	ctx, cancel := r.ctx()
	defer cancel()
	val, err := r.client.Get(ctx, r.keys.data(key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, r.fail(opGet, err)
	case val == nil:
		return []byte{}, nil // present but empty must differ from absent
	}
	return val, nil
}

func (r *Redis) setFull(key, val []byte, ttl time.Duration) error {
	if !r.gate.enter() {
		return ErrClosed
	}
	defer r.gate.leave()
	return r.write(
		func() (bool, error) { return r.fb.set(key, val, ttl) },
		func() error { return r.redisSet(key, val, ttl) })
}

func (r *Redis) deleteFull(key []byte) error {
	if !r.gate.enter() {
		return ErrClosed
	}
	defer r.gate.leave()
	return r.write(
		func() (bool, error) { return r.fb.delete(key) },
		func() error { return r.redisDelete(key) })
}

// write sends a write to Redis, or keeps it in the fallback while Redis is unavailable,
// including when this very write found it so.
func (r *Redis) write(keep func() (bool, error), send func() error) error {
	if handled, err := keep(); handled {
		return r.kept(err)
	}
	err := send()
	if errors.Is(err, ErrUnavailable) {
		if handled, kerr := keep(); handled {
			return r.kept(kerr)
		}
	}
	return err
}

// kept counts a write the fallback refused.
func (r *Redis) kept(err error) error {
	if err != nil {
		r.refusedFallback.Add(1)
	}
	return err
}

// redisSet runs setScript. The TTL is rounded up to whole milliseconds, Redis' unit, so a
// short TTL never becomes "keep".
func (r *Redis) redisSet(key, val []byte, ttl time.Duration) error {
	ms := ttl.Milliseconds()
	if ttl%time.Millisecond != 0 {
		ms++
	}
	ctx, cancel := r.ctx()
	defer cancel()
	stored, err := setScript.Run(ctx, r.client, r.keys.all(key), key, val, ms, r.cfg.capacityBytes(),
		r.keys.dataPrefix(), redisSweepLimit).Int()
	if err != nil {
		return r.fail(opSet, err)
	}
	if stored == 0 {
		r.refusedCap.Add(1)
		return ErrFull
	}
	return nil
}

// redisDelete runs deleteScript. It never checks the capacity: deleting is how a full
// cache gets room back.
func (r *Redis) redisDelete(key []byte) error {
	ctx, cancel := r.ctx()
	defer cancel()
	if err := deleteScript.Run(ctx, r.client, r.keys.all(key), key).Err(); err != nil {
		return r.fail(opDelete, err)
	}
	return nil
}

// SizeBytes is the bytes of apmkit's keys and values in Redis, the number capacity_mb is
// checked against, shared by every replica on the same key prefix. While Redis is
// unavailable it is the last answer.
func (r *Redis) SizeBytes() int64 {
	if !r.gate.enter() {
		return r.lastSize.Load()
	}
	defer r.gate.leave()
	if r.fb.status().state == StateRedisDown {
		return r.lastSize.Load()
	}
	ctx, cancel := r.ctx()
	defer cancel()
	n, err := r.client.Get(ctx, r.keys.used()).Int64()
	switch {
	case errors.Is(err, redis.Nil):
		n = 0
	case err != nil:
		_ = r.fail(opGet, err)
		return r.lastSize.Load()
	}
	r.lastSize.Store(n)
	return n
}

// State is the backend's state and, unless StateOK, what is wrong, in one sentence.
func (r *Redis) State() (State, string) {
	st := r.fb.status()
	return st.state, r.problem(st)
}

func (r *Redis) problem(st fallbackStatus) string {
	switch st.state {
	case StateRedisDown:
		return fmt.Sprintf("redis at %s unavailable since %s: %s; %d writes kept in memory (%s of %s), written to redis once it answers (tried every %s); reads of other keys fail until then",
			r.url, st.since.Format(time.RFC3339), st.cause, st.changes, mib(st.bytes+st.tombs), mib(st.limit), r.opts.probeEvery)
	case StateRedisCatchingUp:
		return fmt.Sprintf("redis at %s answers again since %s: writing the %d writes kept in memory to it",
			r.url, st.since.Format(time.RFC3339), st.changes)
	}
	return ""
}

// Stats snapshots the backend's state and counters. It asks Redis for the size.
func (r *Redis) Stats() Stats {
	st := r.fb.status()
	errs := map[string]int64{}
	for op := range numRedisOps {
		errs[op.String()] = r.errs[op].Load()
	}
	return Stats{
		Backend:   "redis",
		State:     st.state,
		Problem:   r.problem(st),
		Since:     st.since,
		SizeBytes: r.SizeBytes(),
		FreeBytes: -1,
		Refused:   map[string]int64{ReasonCapacity: r.refusedCap.Load(), ReasonRedisUnavailable: r.refusedFallback.Load()},
		Redis: &RedisStats{
			URL: r.url, KeyPrefix: strings.Trim(r.keys.tag, "{}"), Errors: errs,
			FallbackChanges: st.changes, FallbackBytes: st.bytes + st.tombs,
			Replayed: r.replayed.Load(), ReplayDropped: r.replayDropped.Load(),
		},
	}
}
