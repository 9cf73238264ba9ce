package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisNamespace is a namespace of the Redis backend: a Store like every namespace, and
// Shared, for the replicas that use the same Redis.
type redisNamespace struct {
	namespace
	r    *Redis
	name string
}

var _ Shared = redisNamespace{}

// Take deletes key and returns its value, in one script. While Redis is unavailable a key
// written meanwhile is taken from the fallback (its delete reaches Redis with the rest);
// any other key fails with ErrUnavailable, and the caller decides alone.
func (n redisNamespace) Take(key []byte) ([]byte, error) {
	full, err := n.fullKey(key)
	if err != nil {
		return nil, err
	}
	r := n.r
	if !r.gate.enter() {
		return nil, ErrClosed
	}
	defer r.gate.leave()
	if val, hit, err := r.fb.get(full); hit || err != nil {
		if hit && val != nil {
			_, _ = r.fb.delete(full)
		}
		return val, err
	}
	ctx, cancel := r.ctx()
	defer cancel()
	val, err := takeScript.Run(ctx, r.client, r.keys.all(full), full).Text()
	switch {
	case errors.Is(err, redis.Nil): // the script's false
		return nil, nil
	case err != nil:
		return nil, r.fail(opTake, err)
	}
	return []byte(val), nil
}

// SetIfAbsent stores val unless key holds a value, in one script, within the capacity like
// Set. While Redis is unavailable it fails with ErrUnavailable: the caller decides alone.
func (n redisNamespace) SetIfAbsent(key, val []byte, ttl time.Duration) ([]byte, bool, error) {
	full, err := n.fullKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := checkValue(val); err != nil {
		return nil, false, err
	}
	if err := checkTTL(ttl); err != nil {
		return nil, false, err
	}
	r := n.r
	if !r.gate.enter() {
		return nil, false, ErrClosed
	}
	defer r.gate.leave()
	if _, _, err := r.fb.get(full); err != nil {
		return nil, false, err
	}
	ctx, cancel := r.ctx()
	defer cancel()
	res, err := setIfAbsentScript.Run(ctx, r.client, r.keys.all(full), full, val, roundUpMs(ttl),
		r.cfg.capacityBytes(), r.keys.dataPrefix(), redisSweepLimit).Result()
	if err != nil {
		return nil, false, r.fail(opSet, err)
	}
	switch res := res.(type) {
	case []any: // {0, the value there}
		if len(res) == 2 {
			if cur, ok := res[1].(string); ok {
				return []byte(cur), false, nil
			}
		}
	case int64:
		if res == 1 {
			return val, true, nil
		}
		r.refusedCap.Add(1)
		return nil, false, ErrFull
	}
	return nil, false, fmt.Errorf("cache: redis set if absent: unexpected answer %v", res)
}

// Publish sends msg on the namespace's channel: every replica's Subscribe of it gets it.
func (n redisNamespace) Publish(channel string, msg []byte) error {
	r := n.r
	if !r.gate.enter() {
		return ErrClosed
	}
	defer r.gate.leave()
	ctx, cancel := r.ctx()
	defer cancel()
	if err := r.client.Publish(ctx, r.keys.channel(n.name, channel), msg).Err(); err != nil {
		r.errs[opPublish].Add(1)
		return fmt.Errorf("cache: redis publish: %w", err)
	}
	return nil
}

// Subscribe calls fn with the namespace channel's messages in one goroutine until stop.
// go-redis keeps the subscription across reconnects; messages published while it was
// disconnected are missed (callers have their own deadline for what they wait for).
func (n redisNamespace) Subscribe(channel string, fn func(msg []byte)) (func(), error) {
	r := n.r
	if !r.gate.enter() {
		return nil, ErrClosed
	}
	defer r.gate.leave()
	ctx, cancel := r.ctx()
	defer cancel()
	ps := r.client.Subscribe(context.Background(), r.keys.channel(n.name, channel))
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		r.errs[opSubscribe].Add(1)
		return nil, fmt.Errorf("cache: redis subscribe: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.Channel() {
			fn([]byte(m.Payload))
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = ps.Close() // ends ps.Channel()
			<-done
		})
	}, nil
}

// roundUpMs is a TTL in whole milliseconds, Redis' unit, rounded up so a short TTL never
// becomes "keep".
func roundUpMs(ttl time.Duration) int64 {
	ms := ttl.Milliseconds()
	if ttl%time.Millisecond != 0 {
		ms++
	}
	return ms
}
