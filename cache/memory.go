package cache

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is an in-memory Backend with the same semantics as the badger one: TTLs, namespaces,
// a capacity cap, ascending Scan. It is meant for tests; nothing survives Close.
//
// Its capacity cap counts the bytes of every stored key (namespace prefix included) and value.
// Expired entries still count until a Set that would exceed the cap sweeps them out.
type Memory struct {
	now      func() time.Time
	capacity int64 // bytes; 0 = no cap
	root     namespace

	mu      sync.RWMutex
	entries []memEntry // sorted by key, so Scan is a binary search plus a walk
	used    int64      // sum of len(key)+len(val) over entries
	closed  bool
}

type memEntry struct {
	key     string
	val     []byte    // never modified after Set: Get and Scan hand out copies
	expires time.Time // zero = keep
}

func (e memEntry) size() int64 { return int64(len(e.key) + len(e.val)) }

func (e memEntry) liveAt(now time.Time) bool { return e.expires.IsZero() || now.Before(e.expires) }

// MemoryOption configures NewMemory.
type MemoryOption func(*Memory)

// WithClock makes a Memory read the time from now instead of time.Now, so tests can move
// time forward to expire entries without sleeping.
func WithClock(now func() time.Time) MemoryOption {
	return func(m *Memory) { m.now = now }
}

// NewMemory returns an empty in-memory Backend. cfg.GCInterval is ignored.
func NewMemory(cfg Config, opts ...MemoryOption) *Memory {
	m := &Memory{now: time.Now, capacity: cfg.capacityBytes()}
	for _, opt := range opts {
		opt(m)
	}
	m.root = newNamespace(m, "")
	return m
}

// Namespace implements Backend.
func (m *Memory) Namespace(name string) Store { return newNamespace(m, name) }

// MoveNamespace moves every live key of namespace from into namespace to (see Backend).
func (m *Memory) MoveNamespace(from, to string) (int, error) { return moveNamespace(m, from, to) }

// SizeBytes is the sum of the stored keys and values, the number the cap is checked against.
func (m *Memory) SizeBytes() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.used
}

// Get, Set, Delete and Scan work on the root namespace, Namespace("").
func (m *Memory) Get(key []byte) ([]byte, error) { return m.root.Get(key) }

func (m *Memory) Set(key, val []byte, ttl time.Duration) error { return m.root.Set(key, val, ttl) }

func (m *Memory) Delete(key []byte) error { return m.root.Delete(key) }

func (m *Memory) Scan(prefix []byte, fn func(key, val []byte) error) error {
	return m.root.Scan(prefix, fn)
}

// Close drops all data. Every later call, Close included, returns ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed, m.entries, m.used = true, nil, 0
	return nil
}

func (m *Memory) isClosed() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.closed
}

// find returns where key is or would be in m.entries. The caller holds m.mu.
func (m *Memory) find(key string) (int, bool) {
	return slices.BinarySearchFunc(m.entries, key, func(e memEntry, k string) int {
		return strings.Compare(e.key, k)
	})
}

func (m *Memory) getFull(key []byte) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	i, ok := m.find(string(key))
	if !ok || !m.entries[i].liveAt(m.now()) {
		return nil, nil
	}
	// A non-nil copy: the caller may modify it, and an empty value must differ from absent.
	return append([]byte{}, m.entries[i].val...), nil
}

func (m *Memory) setFull(key, val []byte, ttl time.Duration) error {
	e := memEntry{key: string(key), val: bytes.Clone(val)}
	if e.val == nil {
		e.val = []byte{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	now := m.now()
	if ttl > 0 {
		e.expires = now.Add(ttl)
	}
	if !m.fits(e, now) {
		return ErrFull
	}
	m.put(e)
	return nil
}

// fits reports whether e can be stored without going over the cap, sweeping expired entries
// first if it would not. The caller holds m.mu for writing.
func (m *Memory) fits(e memEntry, now time.Time) bool {
	if m.capacity <= 0 || m.usedAfter(e) <= m.capacity {
		return true
	}
	m.sweep(now)
	return m.usedAfter(e) <= m.capacity
}

// usedAfter is m.used once e is stored, counting an overwritten entry's size as freed.
func (m *Memory) usedAfter(e memEntry) int64 {
	used := m.used + e.size()
	if i, ok := m.find(e.key); ok {
		used -= m.entries[i].size()
	}
	return used
}

// put inserts or replaces e. The caller holds m.mu for writing.
func (m *Memory) put(e memEntry) {
	i, ok := m.find(e.key)
	if ok {
		m.used -= m.entries[i].size()
		m.entries[i] = e
	} else {
		m.entries = slices.Insert(m.entries, i, e)
	}
	m.used += e.size()
}

// sweep removes expired entries. The caller holds m.mu for writing.
func (m *Memory) sweep(now time.Time) {
	m.entries = slices.DeleteFunc(m.entries, func(e memEntry) bool {
		if e.liveAt(now) {
			return false
		}
		m.used -= e.size()
		return true
	})
}

func (m *Memory) deleteFull(key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if i, ok := m.find(string(key)); ok {
		m.used -= m.entries[i].size()
		m.entries = slices.Delete(m.entries, i, i+1)
	}
	return nil
}

func (m *Memory) scanFull(prefix []byte, strip int, fn func(key, val []byte, ttl time.Duration) error) error {
	snapshot, now, err := m.live(string(prefix))
	if err != nil {
		return err
	}
	// fn runs without the lock, so it may call back into the store, as it may with badger.
	for _, e := range snapshot {
		var ttl time.Duration
		if !e.expires.IsZero() {
			ttl = e.expires.Sub(now)
		}
		if err := fn([]byte(e.key[strip:]), bytes.Clone(e.val), ttl); err != nil {
			return err
		}
	}
	return nil
}

// live returns the live entries with the prefix, in key order, and the time it looked.
// Entries are values whose val is never modified in place, so the copy is a consistent snapshot.
func (m *Memory) live(prefix string) ([]memEntry, time.Time, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, time.Time{}, ErrClosed
	}
	now := m.now()
	var out []memEntry
	i, _ := m.find(prefix)
	for ; i < len(m.entries) && strings.HasPrefix(m.entries[i].key, prefix); i++ {
		if m.entries[i].liveAt(now) {
			out = append(out, m.entries[i])
		}
	}
	return out, now, nil
}

// lookup returns the entry of key, live or not, for the Redis fallback's replay. Its val is
// never modified in place, so it may be read without the lock.
func (m *Memory) lookup(key string) (memEntry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.find(key)
	if !ok {
		return memEntry{}, false
	}
	return m.entries[i], true
}

// each calls fn with every live entry in key order, with its expiry (zero: none). It is for
// copying the store into badger; fn must not call m, nor keep val.
func (m *Memory) each(fn func(key string, val []byte, expires time.Time)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := m.now()
	for _, e := range m.entries {
		if e.liveAt(now) {
			fn(e.key, e.val, e.expires)
		}
	}
}
