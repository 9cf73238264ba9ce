package cache_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/internal/redistest"
)

// sharedPair is one namespace of two backends on one Redis: two replicas.
func sharedPair(t *testing.T, srv *redistest.Server) (a, b cache.Shared, ra *cache.Redis) {
	t.Helper()
	cfg := cache.Config{RedisURL: srv.URL(), RedisKeyPrefix: "shared:", CapacityMB: 1}
	ra, rb := openRedis(t, cfg), openRedis(t, cfg)
	var ok bool
	if a, ok = ra.Namespace("ns").(cache.Shared); !ok {
		t.Fatal("a Redis namespace is not cache.Shared")
	}
	b = rb.Namespace("ns").(cache.Shared)
	return a, b, ra
}

// TestRedisTakeOnce: of two replicas taking every key at once, each key goes to exactly one
// of them, with its value; taken keys leave the namespace and the capacity accounting.
func TestRedisTakeOnce(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b, ra := sharedPair(t, srv)
	const keys = 200
	for i := range keys {
		mustSet(t, a, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%03d", i), time.Hour)
	}
	var got [keys]atomic.Int32
	var wrong atomic.Int32
	var wg sync.WaitGroup
	for _, s := range []cache.Shared{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				val, err := s.Take([]byte(fmt.Sprintf("k%03d", i)))
				if err != nil {
					t.Error(err)
					return
				}
				if val != nil {
					got[i].Add(1)
					if !bytes.Equal(val, []byte(fmt.Sprintf("v%03d", i))) {
						wrong.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	for i := range keys {
		if n := got[i].Load(); n != 1 {
			t.Fatalf("key %d taken %d times, want once", i, n)
		}
	}
	if wrong.Load() != 0 {
		t.Fatalf("%d takes returned another key's value", wrong.Load())
	}
	wantScan(t, b, nil)
	if size := ra.SizeBytes(); size != 0 {
		t.Fatalf("SizeBytes after taking every key = %d, want 0", size)
	}
	if val, err := a.Take([]byte("absent")); val != nil || err != nil {
		t.Fatalf("Take of an absent key = %q, %v", val, err)
	}
}

// TestRedisSetIfAbsent: the first value stays; later callers, on any replica, get it back.
func TestRedisSetIfAbsent(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b, _ := sharedPair(t, srv)
	cur, stored, err := a.SetIfAbsent([]byte("d"), []byte("first"), time.Minute)
	if err != nil || !stored || string(cur) != "first" {
		t.Fatalf("first SetIfAbsent = %q, %v, %v", cur, stored, err)
	}
	cur, stored, err = b.SetIfAbsent([]byte("d"), []byte("second"), time.Minute)
	if err != nil || stored || string(cur) != "first" {
		t.Fatalf("second SetIfAbsent = %q, %v, %v; want the first value, not stored", cur, stored, err)
	}
	wantScan(t, b, []string{"d=first"})
	// A short TTL runs out; then the key is absent again.
	if _, stored, _ := a.SetIfAbsent([]byte("short"), []byte("x"), 50*time.Millisecond); !stored {
		t.Fatal("SetIfAbsent of a new key did not store it")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, stored, err := b.SetIfAbsent([]byte("short"), []byte("y"), time.Minute); err != nil || stored {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key with a 50 ms TTL is still there after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Over the capacity (1 MiB, shared) it refuses like Set.
	if _, _, err := a.SetIfAbsent([]byte("big"), make([]byte, 2<<20), 0); err != cache.ErrFull {
		t.Fatalf("SetIfAbsent over the capacity: %v, want ErrFull", err)
	}
}

// TestRedisPubSub: a message published by one replica reaches the subscribers of both, on
// their namespace's channel only; after stop, no more.
func TestRedisPubSub(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b, ra := sharedPair(t, srv)
	other := ra.Namespace("other").(cache.Shared)
	got := make(chan string, 10)
	stopB, err := b.Subscribe("news", func(m []byte) { got <- "b:" + string(m) })
	if err != nil {
		t.Fatal(err)
	}
	stopOther, err := other.Subscribe("news", func(m []byte) { got <- "other:" + string(m) })
	if err != nil {
		t.Fatal(err)
	}
	defer stopOther()
	if err := a.Publish("news", []byte("agent^1")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "b:agent^1" {
		t.Fatalf("got %q, want b:agent^1", m)
	}
	stopB()
	stopB() // idempotent
	if err := a.Publish("news", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := other.Publish("news", []byte("own")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "other:own" {
		t.Fatalf("got %q, want only the other namespace's own message", m)
	}
}

// wantScan compares a store's whole content, as key=value lines in key order.
func wantScan(t *testing.T, s cache.Store, want []string) {
	t.Helper()
	var got []string
	if err := s.Scan(nil, func(k, v []byte) error { got = append(got, string(k)+"="+string(v)); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("store holds %v, want %v", got, want)
	}
}
