package trace

import "time"

// Replicas sharing one store (cache.Shared, i.e. Redis) see one agent's messages on
// different processes: a chunk on one, its span on another after a reconnect. Three things
// make that work:
//
//   - Skeletons of emitted spans are written through to the store (not only at Stop), and
//     read from it when this process has none, so a chunk finds a span emitted elsewhere.
//   - A span looks for parked chunks in the store even when its own pending index has
//     none (another replica parked them).
//   - Every stored record (parked chunk, span restored after a stop) is claimed with an
//     atomic Take before it is emitted: of replicas merging one record at once, exactly one
//     emits it.
//
// Without a shared store none of this costs anything: skeletons stay in memory and a
// claim is a plain delete.

// claimStored removes a stored record before its content is emitted and reports whether
// this process may emit it. A store error lets it emit (counted): a possible duplicate
// rather than a loss.
func (a *Assembler) claimStored(key []byte) bool {
	if a.shared == nil {
		a.deleteStored(key)
		return true
	}
	val, err := a.shared.Take(key)
	if err != nil {
		a.c.storeErrors.Add(1)
		return true
	}
	return val != nil
}

// shareSkeleton writes a skeleton through to a shared store, in persistSkeletons' format
// (expiry(8) data), for its lifetime.
func (a *Assembler) shareSkeleton(key string, data []byte, now int64) {
	if a.shared == nil {
		return
	}
	ttl := time.Duration(a.skeletons.ttl) * time.Millisecond
	if err := a.shared.Set([]byte(key), encodeStoredSkeleton(now+a.skeletons.ttl, data), ttl); err != nil {
		a.c.storeErrors.Add(1)
	}
}

// loadSharedSkeleton reads a skeleton another replica wrote, and keeps it in memory for
// the rest of its lifetime.
func (a *Assembler) loadSharedSkeleton(key string) ([]byte, bool) {
	if a.shared == nil {
		return nil, false
	}
	val, err := a.shared.Get([]byte(key))
	if err != nil {
		a.c.storeErrors.Add(1)
		return nil, false
	}
	if val == nil {
		return nil, false
	}
	expires, data, ok := decodeStoredSkeleton(val)
	if !ok {
		a.c.storeErrors.Add(1)
		return nil, false
	}
	now := a.opts.Now().UnixMilli()
	if expires <= now {
		return nil, false
	}
	a.skeletons.putUntil(key, data, expires, now)
	return data, true
}
