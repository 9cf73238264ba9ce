package cache

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scan on Redis: the keys come from the sorted index (see redisKeys), the values a page at
// a time, merged with the writes the fallback keeps while Redis is unavailable.

// scanFull merges Redis' keys with the fallback's: a key changed while Redis was
// unavailable is visited with its value in the fallback (or not at all if deleted there).
// While Redis is down it visits the fallback's keys only and returns ErrUnavailable.
func (r *Redis) scanFull(prefix []byte, strip int, fn func(key, val []byte, ttl time.Duration) error) error {
	if !r.gate.enter() {
		return ErrClosed
	}
	defer r.gate.leave()
	local, now, hidden, unavailable := r.fb.view(prefix)
	var remote *redisReader
	if unavailable == nil {
		keys, err := r.listKeys(prefix, hidden)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			return err
		}
		unavailable, remote = err, &redisReader{r: r, keys: keys}
	}
	if err := mergeScan(local, now, remote, strip, fn); err != nil {
		return err
	}
	return unavailable
}

// listKeys returns the index's keys that start with prefix, in order, less hidden ones.
func (r *Redis) listKeys(prefix []byte, hidden map[string]bool) ([]string, error) {
	lo, hi := "["+string(prefix), lexUpper(prefix)
	var keys []string
	for {
		ctx, cancel := r.ctx()
		page, err := r.client.ZRangeByLex(ctx, r.keys.index(), &redis.ZRangeBy{Min: lo, Max: hi, Count: redisListPage}).Result()
		cancel()
		if err != nil {
			return nil, r.fail(opScan, err)
		}
		for _, k := range page {
			if !hidden[k] {
				keys = append(keys, k)
			}
		}
		if len(page) < redisListPage {
			return keys, nil
		}
		lo = "(" + page[len(page)-1]
	}
}

// lexUpper is the ZRANGEBYLEX bound just past every key that starts with prefix: the
// prefix without its trailing 0xff bytes, its last byte incremented, exclusive; "+" (no
// bound) when nothing is left.
func lexUpper(prefix []byte) string {
	p := bytes.Clone(prefix)
	for len(p) > 0 && p[len(p)-1] == 0xff {
		p = p[:len(p)-1]
	}
	if len(p) == 0 {
		return "+"
	}
	p[len(p)-1]++
	return "(" + string(p)
}

// redisReader yields the live entries of a Scan's key list in order, reading the values
// a page at a time.
type redisReader struct {
	r    *Redis
	keys []string // not read yet
	buf  []redisEntry
}

type redisEntry struct {
	key string
	val []byte
	ttl time.Duration
}

// peek returns the next live entry (nil at the end), reading the next page if needed.
func (rd *redisReader) peek() (*redisEntry, error) {
	for len(rd.buf) == 0 {
		if len(rd.keys) == 0 {
			return nil, nil
		}
		if err := rd.fill(); err != nil {
			return nil, err
		}
	}
	return &rd.buf[0], nil
}

func (rd *redisReader) next() { rd.buf = rd.buf[1:] }

// fill reads the values of the next keys with readScript, skipping keys gone since.
func (rd *redisReader) fill() error {
	n := min(len(rd.keys), redisReadPage)
	dataKeys := make([]string, n)
	for i, k := range rd.keys[:n] {
		dataKeys[i] = rd.r.keys.dataPrefix() + k
	}
	ctx, cancel := rd.r.ctx()
	defer cancel()
	reply, err := readScript.Run(ctx, rd.r.client, dataKeys, redisReadBudget).Slice()
	if err != nil {
		return rd.r.fail(opScan, err)
	}
	read := len(reply) / 2
	if read == 0 {
		return fmt.Errorf("cache: redis scan: empty reply for %d keys", n)
	}
	for i := range read {
		val, _ := reply[2*i].(string)
		pttl, _ := reply[2*i+1].(int64)
		if pttl == -2 {
			continue
		}
		var ttl time.Duration
		if pttl >= 0 {
			ttl = max(time.Duration(pttl)*time.Millisecond, time.Millisecond) // live: never "keep"
		}
		rd.buf = append(rd.buf, redisEntry{key: rd.keys[i], val: []byte(val), ttl: ttl})
	}
	rd.keys = rd.keys[read:]
	return nil
}

// mergeScan visits local (the fallback's entries, live at now) and remote (nil: none) in
// one ascending order. They never share a key: remote's list leaves out the fallback's.
func mergeScan(local []memEntry, now time.Time, remote *redisReader, strip int, fn func(key, val []byte, ttl time.Duration) error) error {
	for {
		var next *redisEntry
		if remote != nil {
			var err error
			if next, err = remote.peek(); err != nil {
				return err
			}
		}
		switch {
		case next == nil && len(local) == 0:
			return nil
		case next == nil || (len(local) > 0 && local[0].key < next.key):
			e := local[0]
			local = local[1:]
			var ttl time.Duration
			if !e.expires.IsZero() {
				ttl = e.expires.Sub(now)
			}
			if err := fn([]byte(e.key[strip:]), bytes.Clone(e.val), ttl); err != nil {
				return err
			}
		default:
			remote.next()
			if err := fn([]byte(next.key[strip:]), next.val, next.ttl); err != nil {
				return err
			}
		}
	}
}
