// Package cache is apmkit's key-value state: what must survive a restart (agent info,
// metadata, pending span chunks, the serviceType table). One badger database per data dir
// (the embedded default), or a Redis shared by several apmkit replicas, split into namespaces
// by key prefix; an in-memory store with the same semantics for tests.
package cache

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Store is a key-value map. Get of an absent or expired key returns (nil, nil).
// Implementations are safe for concurrent use.
type Store interface {
	Get(key []byte) ([]byte, error)
	// Set stores a copy of val; ttl 0 keeps it until deleted.
	Set(key, val []byte, ttl time.Duration) error
	Delete(key []byte) error
	// Scan calls fn for every live key with the prefix, in ascending key order. key and val
	// are only valid during the call and fn must not modify them. An error from fn stops the
	// scan and is returned, except ErrStopScan (tested with errors.Is), which stops it and
	// returns nil. Scan sees a snapshot (Redis: of the keys, each value read as the scan
	// reaches it): fn may Set and Delete keys of the same store. A store that cannot read
	// all of its data (Redis unreachable) visits what it can and returns the error
	// (ErrUnavailable).
	Scan(prefix []byte, fn func(key, val []byte) error) error
	Close() error
}

// Backend is a whole store, split into namespaces. The agent opens one per data dir and hands
// each input Namespace(name), so inputs cannot see or clobber each other's keys.
// OpenBadger's *DB, OpenRedis's *Redis and NewMemory's *Memory are Backends.
type Backend interface {
	// Store is the backend's own keyspace, the same as Namespace(""). It is isolated from
	// every named namespace. Closing it closes the backend and every namespace.
	Store
	// Namespace returns the Store of keys under name. Namespaces never see each other's keys;
	// Scan passes keys without the namespace. Its Close is a no-op (the Backend owns the
	// resources); after the Backend is closed every call on it returns ErrClosed.
	Namespace(name string) Store
	// MoveNamespace moves every live key of namespace from into namespace to, keeping the
	// time each has left to live and overwriting keys of the same name in to; it returns
	// how many keys it moved. It hands state kept under an old name to its new owner.
	MoveNamespace(from, to string) (int, error)
	// SizeBytes is the size the capacity cap is checked against (see each implementation).
	SizeBytes() int64
}

// Shared is implemented by the namespaces of a backend that several apmkit replicas use at
// once (Redis). Work that must happen exactly once across replicas (emitting a waiting
// chunk, deciding a trace) is claimed with its atomic operations, and replicas wake each
// other through its channels instead of polling.
type Shared interface {
	Store
	// Take deletes key and returns its value (nil when absent or expired), atomically: of
	// several replicas taking one key at once, exactly one gets the value.
	Take(key []byte) ([]byte, error)
	// SetIfAbsent stores val with ttl unless key holds a value. It returns the value key
	// holds after the call and whether that is val, stored by this call.
	SetIfAbsent(key, val []byte, ttl time.Duration) (current []byte, stored bool, err error)
	// Publish sends msg to every subscriber of the channel (of this namespace), on every
	// replica, this one included. Delivery is best effort: a replica that is not connected
	// misses it.
	Publish(channel string, msg []byte) error
	// Subscribe calls fn with each message published to the channel until stop is called.
	// fn runs in one goroutine of the subscription, in order, and must not block long.
	Subscribe(channel string, fn func(msg []byte)) (stop func(), err error)
}

// Every implementation is a Backend.
var (
	_ Backend = (*DB)(nil)
	_ Backend = (*Redis)(nil)
	_ Backend = (*Memory)(nil)
)

// ErrStopScan ends a Scan early without an error.
var ErrStopScan = errors.New("cache: stop scan")

// ErrFull is returned by Set when the store is at its configured capacity.
var ErrFull = errors.New("cache: store is at capacity")

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("cache: store is closed")

// ErrUnavailable is returned (wrapped, with the cause) by the Redis backend's calls that
// need Redis while it does not answer in time; see Redis.
var ErrUnavailable = errors.New("cache: redis is unavailable")

// ErrDiskFull is returned by Set (and Delete) when the free space of the data dir's file
// system is below the cache's reserve (Config.MinFreeMB): badger writes through memory-mapped
// files, and a write that finds no disk space under a mapped page crashes the process, so
// the cache stops writing first. Writes are admitted again once space returns.
var ErrDiskFull = errors.New("cache: disk full: free space is below the cache's reserve (min_free_mb)")

// Config is the `[cache]` table of apmkit.conf.
type Config struct {
	// CapacityMB caps the on-disk size (badger) or the bytes of apmkit's keys and values
	// (Redis); Set fails with ErrFull beyond it. 0 = no cap.
	CapacityMB int `toml:"capacity_mb" doc:"Cap on the cache size in MiB (agent info, metadata, pending chunks): on disk, or with redis_url the\nbytes of apmkit's keys and values in Redis (shared by the replicas; Redis' own overhead is not counted).\nWrites beyond it fail and are counted. 0 = no cap."`
	// GCInterval is how often badger's value log is garbage collected.
	GCInterval time.Duration `toml:"gc_interval" doc:"How often the cache's value log is garbage collected (badger only)."`
	// MinFreeMB is the free space the cache leaves on the data dir's file system; see
	// diskSpace. Values below the minimum reserve are raised to it.
	MinFreeMB int `toml:"min_free_mb" doc:"Free space in MiB the cache leaves on the data dir's file system. Below it cache writes are refused\nand counted (apmkit stays up, /v1/ping says disk_full) until space returns. At least 10, badger's\nmemtable flushes; the size of its tables (up to 64 MiB) is added, what a compaction may rewrite.\nBadger only."`

	// RedisURL, when set, puts the cache in Redis instead of badger; see parseRedisURL.
	RedisURL string `toml:"redis_url" doc:"Keep the cache in Redis (or Valkey), shared by several apmkit replicas, instead of badger in the\ndata dir. One server: redis://[:PASSWORD@]host:6379[/DB] (rediss:// for TLS). Sentinel:\nredis+sentinel://[:SENTINEL_PASSWORD@]sentinel:26379[/DB]?master_name=NAME[&password=PASSWORD][&addr=sentinel2:26379].\nCluster: redis+cluster://[:PASSWORD@]node:6379[?addr=node2:6379] (rediss+... for TLS). Other query\nparameters are go-redis' (pool_size, skip_verify...). Passwords are masked wherever the URL is printed.\nENV_CACHE_REDIS_URL overrides it. Empty = badger."`
	// RedisKeyPrefix starts every key apmkit writes to Redis.
	RedisKeyPrefix string `toml:"redis_key_prefix" doc:"Start of every Redis key apmkit writes (in braces, so a Redis Cluster keeps them in one hash slot).\nReplicas that share state use the same prefix; separate apmkit deployments on one Redis use different ones."`
	// RedisTimeout bounds each Redis call.
	RedisTimeout time.Duration `toml:"redis_timeout" doc:"Longest wait for Redis in one call (connecting included). A call that takes longer fails, counted;\nthe cache then runs on its local fallback until Redis answers again."`
	// RedisFallbackMB bounds the writes kept in memory while Redis is unavailable.
	RedisFallbackMB int `toml:"redis_fallback_mb" doc:"While Redis is unavailable, writes are kept in memory up to this many MiB (plus up to 8 MiB of\ndeleted keys) and written to Redis once it answers; what does not fit is refused and counted.\nLost if apmkit stops before Redis is back. 0 = no fallback: writes fail while Redis is unavailable."`
}

// DefaultConfig returns the defaults used when apmkit.conf has no [cache] table.
func DefaultConfig() Config {
	return Config{
		CapacityMB: 1024, GCInterval: 5 * time.Minute, MinFreeMB: minReserve >> 20,
		RedisKeyPrefix: "apmkit:", RedisTimeout: time.Second, RedisFallbackMB: 64,
	}
}

// Validate checks the table; the errors name the keys (cache.capacity_mb).
func (c Config) Validate() error {
	var errs []error
	if c.CapacityMB < 0 {
		errs = append(errs, fmt.Errorf("cache.capacity_mb: %d must be >= 0", c.CapacityMB))
	}
	if c.GCInterval <= 0 {
		errs = append(errs, fmt.Errorf("cache.gc_interval: %s must be > 0", c.GCInterval))
	}
	if c.MinFreeMB < 0 {
		errs = append(errs, fmt.Errorf("cache.min_free_mb: %d must be >= 0 (values below 10 mean 10)", c.MinFreeMB))
	}
	if c.RedisURL != "" {
		if _, err := parseRedisURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("cache.redis_url: %w", err))
		}
	}
	if c.RedisKeyPrefix == "" || strings.ContainsAny(c.RedisKeyPrefix, "{}") {
		errs = append(errs, fmt.Errorf("cache.redis_key_prefix: %q must not be empty nor contain { or } (apmkit adds the braces)", c.RedisKeyPrefix))
	}
	if c.RedisTimeout <= 0 {
		errs = append(errs, fmt.Errorf("cache.redis_timeout: %s must be > 0", c.RedisTimeout))
	}
	if c.RedisFallbackMB < 0 {
		errs = append(errs, fmt.Errorf("cache.redis_fallback_mb: %d must be >= 0", c.RedisFallbackMB))
	}
	return errors.Join(errs...)
}

// Size limits of every Store. They are badger's (it refuses bigger keys and values, with
// errors that dump the data), applied to the in-memory store too so tests catch oversize data.
const (
	// MaxKeySize bounds a key together with its namespace name (plus one to three bytes).
	MaxKeySize = 65000
	// MaxValueSize bounds a value; it is half of badger's value-log file size, so a value
	// always fits a value-log file with room to spare.
	MaxValueSize = valueLogFileSize / 2
)

// errEmptyKey is returned for an empty key: badger cannot store one, and an empty key is
// almost always a caller's bug, so both implementations refuse it.
var errEmptyKey = errors.New("cache: empty key")

// checkKey validates a full key (namespace prefix included) the same way for every
// implementation; prefixLen is the namespace's part of it.
func checkKey(full []byte, prefixLen int) error {
	if len(full) == prefixLen {
		return errEmptyKey
	}
	if len(full) > MaxKeySize {
		return fmt.Errorf("cache: key of %d bytes (with its namespace) is over the %d byte limit",
			len(full), MaxKeySize)
	}
	return nil
}

func checkValue(val []byte) error {
	if len(val) > MaxValueSize {
		return fmt.Errorf("cache: value of %d bytes is over the %d byte limit", len(val), MaxValueSize)
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("cache: negative ttl %v", ttl)
	}
	return nil
}

// capacityBytes converts Config.CapacityMB to bytes; 0 (or less) means no cap.
func (c Config) capacityBytes() int64 {
	if c.CapacityMB <= 0 {
		return 0
	}
	return int64(c.CapacityMB) << 20
}
