package cache

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fallback is what the Redis backend does while Redis is unavailable: it keeps the writes
// (sets and deletes) in memory, bounded, serves reads of those keys from there, and hands
// them to Redis once it answers again. It also holds the backend's health state.
//
// Why every write goes to the fallback until it is empty, even once Redis answers again
// (StateRedisCatchingUp): a write straight to Redis could be overwritten by an older
// write of the same key replayed from the fallback after it. Each key's latest change has
// a sequence number; replay removes a key from the fallback only if no newer change came
// while its write to Redis was under way, so the newer one is replayed after it.
//
// What this means for apmkit's state: metadata and agent info written during an outage
// are served locally and reach Redis later, so other replicas see them late but do see
// them; pending chunks kept here are merged with their span by this replica (Scan visits
// them) and reach Redis if still pending. A key only in Redis cannot be read until Redis
// is back: reads of it fail fast (ErrUnavailable) instead of waiting for Redis each time.
// The fallback is lost if apmkit stops while Redis is still unavailable.
type fallback struct {
	limit  int64       // bytes of values; 0 = no fallback
	active atomic.Bool // state != StateOK, read without the lock on every call
	mu     sync.Mutex  // guards what follows, and makes "state, then write" one step
	state  State       // StateOK, StateRedisDown or StateRedisCatchingUp
	since  time.Time   // when the state began
	cause  string      // why Redis is unavailable
	mem    *Memory     // the values set, with their TTLs
	change map[string]change
	tombs  int64  // bytes of the deleted keys in change
	seq    uint64 // last sequence number given
}

// change is the latest change of a key kept in the fallback.
type change struct {
	seq     uint64
	deleted bool // deleted, not in mem
}

// replayItem is one change to write to Redis.
type replayItem struct {
	key     string
	seq     uint64
	deleted bool // delete it (deleted, or set with a TTL that has run out since)
	val     []byte
	ttl     time.Duration
}

func newFallback(limitMB int) *fallback {
	f := &fallback{limit: int64(limitMB) << 20, state: StateOK, since: time.Now(), change: map[string]change{}}
	if limitMB > 0 {
		f.mem = NewMemory(Config{CapacityMB: limitMB})
	}
	return f
}

// degrade records that Redis did not answer; it reports whether that began an outage
// (the state was ok).
func (f *fallback) degrade(cause error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	began := f.state == StateOK
	if began || f.state == StateRedisCatchingUp {
		f.state, f.since = StateRedisDown, time.Now()
	}
	f.cause = cause.Error()
	f.active.Store(true)
	return began
}

// catchUp records that Redis answers again: the replay begins.
func (f *fallback) catchUp() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == StateRedisDown {
		f.state, f.since = StateRedisCatchingUp, time.Now()
	}
}

// finish ends the catch-up if nothing is left to replay; it reports whether it did.
func (f *fallback) finish() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != StateRedisCatchingUp || len(f.change) > 0 {
		return false
	}
	f.state, f.since, f.cause = StateOK, time.Now(), ""
	f.active.Store(false)
	return true
}

// set keeps a write while Redis is unavailable. handled is false when Redis is in use (the
// caller writes to Redis); otherwise err says whether the write was kept.
func (f *fallback) set(key, val []byte, ttl time.Duration) (handled bool, err error) {
	return f.keep("set", func() error {
		if err := f.mem.setFull(key, val, ttl); err != nil {
			return fmt.Errorf("%w: the write is refused: %w", f.unavailable("set", "the local fallback is full ("+mib(f.limit)+")"), err)
		}
		f.record(string(key), false)
		return nil
	})
}

// delete is set for a delete: the key is remembered, to be deleted in Redis later.
func (f *fallback) delete(key []byte) (handled bool, err error) {
	return f.keep("delete", func() error {
		k := string(key)
		if c, ok := f.change[k]; (!ok || !c.deleted) && f.tombs+int64(len(k)) > maxTombstoneBytes {
			return fmt.Errorf("%w: the delete is refused: %w", f.unavailable("delete", "too many deleted keys to remember ("+mib(maxTombstoneBytes)+")"), ErrFull)
		}
		if err := f.mem.deleteFull(key); err != nil {
			return err
		}
		f.record(k, true)
		return nil
	})
}

// keep runs write, with f.mu held, while Redis is unavailable; handled is false when Redis
// is in use. Checking the state and writing in one step is what lets finish end the
// catch-up only once nothing can be left behind.
func (f *fallback) keep(op string, write func() error) (handled bool, err error) {
	if !f.active.Load() {
		return false, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == StateOK {
		return false, nil
	}
	if f.mem == nil {
		return true, f.unavailable(op, "redis_fallback_mb is 0")
	}
	return true, write()
}

// record notes the latest change of key. The caller holds f.mu.
func (f *fallback) record(key string, deleted bool) {
	if c, ok := f.change[key]; ok && c.deleted {
		f.tombs -= int64(len(key))
	}
	if deleted {
		f.tombs += int64(len(key))
	}
	f.seq++
	f.change[key] = change{seq: f.seq, deleted: deleted}
}

// get answers a read from the fallback: hit when the key changed while Redis was
// unavailable (val nil if it was deleted or its TTL ran out); else failFast when Redis is
// down (the caller must not wait for it), and otherwise the caller reads Redis.
func (f *fallback) get(key []byte) (val []byte, hit bool, failFast error) {
	if !f.active.Load() {
		return nil, false, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.change[string(key)]; ok {
		if c.deleted {
			return nil, true, nil
		}
		val, err := f.mem.getFull(key)
		return val, true, err
	}
	if f.state == StateRedisDown {
		return nil, false, f.unavailable("get", "")
	}
	return nil, false, nil
}

// view is a Scan's snapshot of the fallback: its entries with the prefix live at now, in
// key order; the keys with the prefix whose Redis value it hides (changed here); and
// failFast when Redis is down.
func (f *fallback) view(prefix []byte) (local []memEntry, now time.Time, hidden map[string]bool, failFast error) {
	if !f.active.Load() {
		return nil, time.Time{}, nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mem != nil {
		local, now, _ = f.mem.live(string(prefix))
	}
	hidden = map[string]bool{}
	p := string(prefix)
	for k := range f.change {
		if strings.HasPrefix(k, p) {
			hidden[k] = true
		}
	}
	if f.state == StateRedisDown {
		failFast = f.unavailable("scan", "")
	}
	return local, now, hidden, failFast
}

// batch returns up to n changes to replay, in no particular order.
func (f *fallback) batch(n int) []replayItem {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	var out []replayItem
	for k, c := range f.change {
		if len(out) == n {
			break
		}
		it := replayItem{key: k, seq: c.seq, deleted: true}
		if !c.deleted {
			if e, ok := f.mem.lookup(k); ok && e.liveAt(now) {
				it.deleted, it.val = false, e.val // never modified in place: safe without the lock
				if !e.expires.IsZero() {
					it.ttl = e.expires.Sub(now)
				}
			}
		}
		out = append(out, it)
	}
	return out
}

// done forgets a replayed change, unless the key changed again since batch.
func (f *fallback) done(it replayItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.change[it.key]
	if !ok || c.seq != it.seq {
		return
	}
	delete(f.change, it.key)
	if c.deleted {
		f.tombs -= int64(len(it.key))
	} else {
		_ = f.mem.deleteFull([]byte(it.key))
	}
}

// unavailable is the error of a call refused because Redis is unavailable. The caller
// holds f.mu.
func (f *fallback) unavailable(op, why string) error {
	msg := fmt.Sprintf("cache: redis %s: unavailable since %s (%s)", op, f.since.Format(time.RFC3339), f.cause)
	if why != "" {
		msg += "; " + why
	}
	return &unavailableError{msg: msg}
}

// unavailableError is ErrUnavailable with what happened, and the go-redis error if any.
type unavailableError struct {
	msg   string
	cause error
}

func (e *unavailableError) Error() string        { return e.msg }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e *unavailableError) Unwrap() error        { return e.cause }

// fallbackStatus is a snapshot for State and Stats.
type fallbackStatus struct {
	state        State
	since        time.Time
	cause        string
	changes      int
	bytes, tombs int64
	limit        int64
}

func (f *fallback) status() fallbackStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := fallbackStatus{state: f.state, since: f.since, cause: f.cause, changes: len(f.change), tombs: f.tombs, limit: f.limit}
	if f.mem != nil {
		st.bytes = f.mem.SizeBytes()
	}
	return st
}

func (f *fallback) close() {
	if f.mem != nil {
		_ = f.mem.Close()
	}
}
