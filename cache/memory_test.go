package cache_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/cache/storetest"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(_ *testing.T, cfg cache.Config) storetest.Instance {
			clock := newFakeClock()
			return storetest.Instance{
				Backend: cache.NewMemory(cfg, cache.WithClock(clock.Now)),
				Advance: clock.Advance,
			}
		},
		FreesOnDelete: true,
	})
}

// TestMemoryConformanceWallClock runs the suite's wall-clock TTL path too, the one badger
// takes, so that path is known to pass against an implementation with exact TTLs.
func TestMemoryConformanceWallClock(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for real TTL expiry")
	}
	storetest.Run(t, storetest.Harness{
		Open: func(_ *testing.T, cfg cache.Config) storetest.Instance {
			return storetest.Instance{Backend: cache.NewMemory(cfg)}
		},
		FreesOnDelete: true,
	})
}

// TestMemoryExpiredMakeRoom: expired entries count against the cap until a Set needs their room.
func TestMemoryExpiredMakeRoom(t *testing.T) {
	clock := newFakeClock()
	m := cache.NewMemory(cache.Config{CapacityMB: 1}, cache.WithClock(clock.Now))
	defer m.Close()
	half := make([]byte, 600<<10)
	if err := m.Set([]byte("a"), half, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Set([]byte("b"), half, 0); !errors.Is(err, cache.ErrFull) {
		t.Fatalf("Set over the cap = %v, want ErrFull", err)
	}
	clock.Advance(time.Minute)
	if err := m.Set([]byte("b"), half, 0); err != nil {
		t.Fatalf("Set once the entry in the way expired = %v, want nil", err)
	}
	if got, want := m.SizeBytes(), int64(len(half)+2); got != want {
		t.Fatalf("SizeBytes() = %d, want %d (one key with its 1-byte namespace prefix, one value)", got, want)
	}
}

// TestMemoryOverwriteWhenFull: replacing a value with one no bigger never needs more room.
func TestMemoryOverwriteWhenFull(t *testing.T) {
	m := cache.NewMemory(cache.Config{CapacityMB: 1})
	defer m.Close()
	big := make([]byte, 1<<20-2) // with the 2-byte stored key: exactly the cap
	if err := m.Set([]byte("k"), big, 0); err != nil {
		t.Fatalf("Set of exactly the cap: %v", err)
	}
	if err := m.Set([]byte("x"), nil, 0); !errors.Is(err, cache.ErrFull) {
		t.Fatalf("Set beyond the cap = %v, want ErrFull", err)
	}
	if err := m.Set([]byte("k"), big[:10], 0); err != nil {
		t.Fatalf("overwrite with a smaller value on a full store: %v", err)
	}
}
