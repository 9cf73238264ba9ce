package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// keyspace is what a backend implements once, on full keys (namespace prefix included), so the
// namespace logic below is shared by badger and the in-memory store and cannot drift.
type keyspace interface {
	getFull(key []byte) ([]byte, error)
	setFull(key, val []byte, ttl time.Duration) error
	deleteFull(key []byte) error
	// scanFull calls fn with each key minus its first strip bytes (the namespace prefix) and
	// the time the key has left to live (0: no TTL).
	scanFull(prefix []byte, strip int, fn func(key, val []byte, ttl time.Duration) error) error
	isClosed() bool
}

// namespace is the Store of the keys of a keyspace that start with prefix.
type namespace struct {
	ks     keyspace
	prefix []byte
}

// newNamespace builds the view of name. The prefix is len(name) as a uvarint followed by name:
// because the length comes first, no namespace's prefix is a prefix of another's ("a" + key
// "bx" and "ab" + key "x" differ), so namespaces cannot collide, and "" is just the byte 0x00.
func newNamespace(ks keyspace, name string) namespace {
	p := make([]byte, 0, binary.MaxVarintLen64+len(name))
	p = binary.AppendUvarint(p, uint64(len(name)))
	return namespace{ks: ks, prefix: append(p, name...)}
}

// fullKey returns prefix+key in a new slice, so backends may keep it without aliasing the
// caller's key, or an error if key is empty or too long.
func (n namespace) fullKey(key []byte) ([]byte, error) {
	k := make([]byte, len(n.prefix)+len(key))
	copy(k, n.prefix)
	copy(k[len(n.prefix):], key)
	if err := checkKey(k, len(n.prefix)); err != nil {
		return nil, err
	}
	return k, nil
}

func (n namespace) Get(key []byte) ([]byte, error) {
	k, err := n.fullKey(key)
	if err != nil {
		return nil, err
	}
	return n.ks.getFull(k)
}

func (n namespace) Set(key, val []byte, ttl time.Duration) error {
	k, err := n.fullKey(key)
	if err != nil {
		return err
	}
	if err := checkValue(val); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	return n.ks.setFull(k, val, ttl)
}

func (n namespace) Delete(key []byte) error {
	k, err := n.fullKey(key)
	if err != nil {
		return err
	}
	return n.ks.deleteFull(k)
}

func (n namespace) Scan(prefix []byte, fn func(key, val []byte) error) error {
	// prefix may be empty (scan the whole namespace), so it skips fullKey's checks.
	full := append(append(make([]byte, 0, len(n.prefix)+len(prefix)), n.prefix...), prefix...)
	err := n.ks.scanFull(full, len(n.prefix), func(key, val []byte, _ time.Duration) error { return fn(key, val) })
	if errors.Is(err, ErrStopScan) {
		return nil
	}
	return err
}

// Close is a no-op: the backend owns the files and closes them once for every namespace.
func (n namespace) Close() error {
	if n.ks.isClosed() {
		return ErrClosed
	}
	return nil
}

// moveNamespace moves every live key of namespace from into namespace to, with the time it
// has left to live, overwriting keys of the same name there. It returns how many it moved.
// It is for handing state kept under an old namespace name to its new owner.
func moveNamespace(ks keyspace, from, to string) (int, error) {
	src, dst := newNamespace(ks, from), newNamespace(ks, to)
	moved := 0
	err := ks.scanFull(src.prefix, len(src.prefix), func(key, val []byte, ttl time.Duration) error {
		if err := dst.Set(key, val, ttl); err != nil {
			return err
		}
		moved++
		return src.Delete(key)
	})
	if err != nil {
		return moved, fmt.Errorf("cache: move namespace %q to %q: %w", from, to, err)
	}
	return moved, nil
}
