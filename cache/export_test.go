package cache

import "time"

// Hooks for the external tests (package cache_test).

// WithCheckEvery makes the DB measure the free space, and try to leave StateMemory, every d.
func WithCheckEvery(d time.Duration) Option {
	return func(o *options) { o.checkEvery = d }
}

// WithRetry sets the waits before opening badger again after it failed to open.
func WithRetry(first, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = first, max }
}

// MeasureSpace measures the free space now, as the next write would near the reserve.
func (db *DB) MeasureSpace() { db.space.measure() }

// CloseAbandoned closes the badger that Close left open on a full disk, so the test leaks
// no goroutine; it reports whether Close had left one.
func (db *DB) CloseAbandoned() (bool, error) {
	if db.abandoned == nil {
		return false, nil
	}
	return true, db.abandoned.Close()
}

// MinReserve is the smallest reserve, the default of Config.MinFreeMB in bytes.
const MinReserve = minReserve

// Hysteresis is the room above the reserve that ends StateDiskFull.
const Hysteresis = hysteresis

// WithRedisProbe makes the Redis backend try a down Redis every d.
func WithRedisProbe(d time.Duration) RedisOption {
	return func(o *redisOptions) { o.probeEvery = d }
}

// WithRedisSweep makes the Redis backend sweep expired keys every d.
func WithRedisSweep(d time.Duration) RedisOption {
	return func(o *redisOptions) { o.sweepEvery = d }
}
