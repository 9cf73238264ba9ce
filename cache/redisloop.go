package cache

import (
	"errors"
	"time"
)

// The Redis backend's background work: trying a down Redis, writing the fallback to it
// once it answers, and sweeping expired keys out of the index.

// loop runs until Close: while Redis is unavailable it tries it every probeEvery and
// replays the fallback once it answers; otherwise it sweeps expired keys every sweepEvery.
// It is the backend's only goroutine: calls never start one, however slow Redis is.
func (r *Redis) loop() {
	defer close(r.done)
	probe := time.NewTicker(r.opts.probeEvery)
	defer probe.Stop()
	sweep := time.NewTicker(r.opts.sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-probe.C:
			if r.fb.active.Load() {
				r.recover(r.stop)
			}
		case <-sweep.C:
			if !r.fb.active.Load() {
				r.sweep()
			}
		}
	}
}

// recover tries a down Redis and, once it answers, writes the fallback to it.
func (r *Redis) recover(stop <-chan struct{}) {
	if st := r.fb.status(); st.state == StateRedisDown {
		ctx, cancel := r.ctx()
		err := r.client.Ping(ctx).Err()
		cancel()
		if err != nil {
			// Whatever the error (a new password is not transient), Redis is still not usable.
			r.errs[opPing].Add(1)
			r.fb.degrade(err)
			return
		}
		r.fb.catchUp()
		r.log.Info("cache: redis answers again: writing the writes kept in memory to it", "writes", st.changes,
			"down_for", time.Since(st.since).Round(time.Second).String())
	}
	r.replay(stop)
}

// replay writes the fallback's changes to Redis until none is left (then the state is ok
// again), Redis fails again, or stop is closed. A write Redis refuses for good (capacity)
// is dropped, counted and logged: keeping it would stop the catch-up forever.
func (r *Redis) replay(stop <-chan struct{}) {
	dropped := 0
	defer func() {
		if dropped > 0 {
			r.log.Warn("cache: redis refused writes kept in memory; they are dropped", "writes", dropped)
		}
	}()
	for {
		items := r.fb.batch(redisReplayBatch)
		if len(items) == 0 {
			if r.fb.finish() {
				r.log.Info("cache: caught up with redis: the cache is back in redis alone")
			}
			return
		}
		for _, it := range items {
			select {
			case <-stop:
				return // Close is waiting; it replays what is left itself
			default:
			}
			var err error
			if it.deleted {
				err = r.redisDelete([]byte(it.key))
			} else {
				err = r.redisSet([]byte(it.key), it.val, it.ttl)
			}
			if errors.Is(err, ErrUnavailable) {
				return // down again (fail switched the state); the next probe resumes
			}
			if err != nil {
				r.replayDropped.Add(1)
				dropped++
			} else {
				r.replayed.Add(1)
			}
			r.fb.done(it)
		}
	}
}

// flushFallback, at Close, gives the writes still kept in memory a last chance to reach
// Redis, and says how many are lost when it cannot.
func (r *Redis) flushFallback() {
	if !r.fb.active.Load() {
		return
	}
	r.recover(nil)
	if st := r.fb.status(); st.changes > 0 {
		r.log.Error("cache: redis is unavailable at stop: the writes kept in memory for it are lost", "writes", st.changes)
	}
}

// sweep forgets the keys whose TTL has passed from the index and the accounting (Redis
// drops their values by itself), a bounded amount per call, so that keys nobody deletes do
// not grow the index. Replicas sweep the same keys harmlessly: the script is atomic.
func (r *Redis) sweep() {
	for range redisSweepRounds {
		ctx, cancel := r.ctx()
		n, err := sweepScript.Run(ctx, r.client, r.keys.meta(), r.keys.dataPrefix(), redisSweepLimit).Int()
		cancel()
		if err != nil {
			_ = r.fail(opSweep, err)
			return
		}
		if n < redisSweepLimit {
			return
		}
	}
}
