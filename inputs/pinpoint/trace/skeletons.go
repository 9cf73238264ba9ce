package trace

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// skeletons keeps what chunks arriving after their span need of it (each emitted event's
// sequence, depth and span_id), for spans and async work emitted in the last
// 2*ChunkWait. It lives in memory, oldest first within a byte cap, because a badger write
// per span measured about a microsecond of CPU per event (a quarter of the whole
// pipeline's budget), while late chunks are rare and come within seconds. Stop writes the
// live skeletons to the store and Start reads them back, so a graceful restart keeps them.
type skeletons struct {
	mu       sync.Mutex
	byKey    map[string]*list.Element
	order    list.List // of *skeleton, oldest first
	bytes    int64
	maxBytes int64
	ttl      int64 // ms
}

type skeleton struct {
	key     string // the store key: prefix and span key (and async work)
	data    []byte // encodeSkeleton
	expires int64  // epoch ms
}

// skeletonOverhead is the memory of an entry beyond its key and data (map slot, list
// element, struct), counted against the cap.
const skeletonOverhead = 160

func (s *skeleton) size() int64 { return int64(len(s.key)+len(s.data)) + skeletonOverhead }

func newSkeletons(maxBytes int64, ttl time.Duration) *skeletons {
	return &skeletons{byKey: make(map[string]*list.Element), maxBytes: maxBytes, ttl: ttl.Milliseconds()}
}

func (c *skeletons) get(key string, now int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	sk := el.Value.(*skeleton)
	if sk.expires <= now {
		c.removeLocked(el)
		return nil, false
	}
	return sk.data, true
}

// put stores a skeleton with a fresh lifetime, dropping expired and then the oldest
// entries to stay within the cap.
func (c *skeletons) put(key string, data []byte, now int64) {
	c.putUntil(key, data, now+c.ttl, now)
}

func (c *skeletons) putUntil(key string, data []byte, expires, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.removeLocked(el)
	}
	sk := &skeleton{key: key, data: data, expires: expires}
	if sk.size() > c.maxBytes || expires <= now {
		return
	}
	c.byKey[key] = c.order.PushBack(sk)
	c.bytes += sk.size()
	for front := c.order.Front(); front != nil; front = c.order.Front() {
		if old := front.Value.(*skeleton); old.expires > now && c.bytes <= c.maxBytes {
			break
		}
		c.removeLocked(front)
	}
}

func (c *skeletons) removeLocked(el *list.Element) {
	sk := c.order.Remove(el).(*skeleton)
	delete(c.byKey, sk.key)
	c.bytes -= sk.size()
}

func (c *skeletons) size() (n, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(len(c.byKey)), c.bytes
}

// live returns the skeletons not expired at now, oldest first.
func (c *skeletons) live(now int64) []skeleton {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]skeleton, 0, len(c.byKey))
	for el := c.order.Front(); el != nil; el = el.Next() {
		if sk := el.Value.(*skeleton); sk.expires > now {
			out = append(out, *sk)
		}
	}
	return out
}

// persistSkeletons writes the live skeletons to the store (value: expiry(8) data), each
// with the rest of its lifetime as TTL. It stops when ctx ends: what is not written is
// lost, and late chunks of those spans become partial after the restart.
func (a *Assembler) persistSkeletons(ctx context.Context) error {
	now := a.opts.Now().UnixMilli()
	for _, sk := range a.skeletons.live(now) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("trace: persist span skeletons: %w", err)
		}
		ttl := time.Duration(sk.expires-now) * time.Millisecond
		if err := a.opts.Store.Set([]byte(sk.key), encodeStoredSkeleton(sk.expires, sk.data), ttl); err != nil {
			a.c.storeErrors.Add(1)
		}
	}
	return nil
}

// restoreSkeletons reads back what persistSkeletons wrote.
func (a *Assembler) restoreSkeletons() error {
	now := a.opts.Now().UnixMilli()
	var errs []error
	for _, prefix := range []byte{prefixSkeleton, prefixAsyncSkeleton} {
		err := a.opts.Store.Scan([]byte{prefix}, func(key, val []byte) error {
			expires, data, ok := decodeStoredSkeleton(val)
			if !ok {
				a.c.storeErrors.Add(1)
				return nil
			}
			a.skeletons.putUntil(string(key), append([]byte(nil), data...), expires, now)
			return nil
		})
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("trace: restore span skeletons: %w", err)
	}
	return nil
}

// encodeStoredSkeleton is a skeleton as the store keeps it: its expiry (epoch ms, 8 bytes)
// then its data.
func encodeStoredSkeleton(expires int64, data []byte) []byte {
	val := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(data)), uint64(expires))
	return append(val, data...)
}

// decodeStoredSkeleton reads what encodeStoredSkeleton wrote; data aliases val.
func decodeStoredSkeleton(val []byte) (expires int64, data []byte, ok bool) {
	if len(val) < 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(val)), val[8:], true
}
