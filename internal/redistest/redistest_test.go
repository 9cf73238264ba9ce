package redistest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRestartKeepsWhatPersisted: with Persist, what Redis took before a kill is there after
// Restart, on the same address; without it Redis comes back empty.
func TestRestartKeepsWhatPersisted(t *testing.T) {
	for _, persist := range []bool{true, false} {
		s := Start(t, Options{Persist: persist, Password: "s3cret"})
		c := s.Client(t)
		ctx := context.Background()
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		s.Stop(t)
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("PING answered while stopped")
		}
		s.Restart(t)
		got, err := c.Get(ctx, "k").Result()
		switch {
		case persist && (err != nil || got != "v"):
			t.Fatalf("persisted: Get(k) after restart = %q, %v; want v", got, err)
		case !persist && err != redis.Nil:
			t.Fatalf("not persisted: Get(k) after restart = %q, %v; want redis.Nil", got, err)
		}
	}
}

// TestClusterRefusesCrossSlot: the one-node cluster behaves as a cluster does.
func TestClusterRefusesCrossSlot(t *testing.T) {
	c := Start(t, Options{Cluster: true}).Client(t)
	ctx := context.Background()
	if err := c.MSet(ctx, "{a}1", "x", "{a}2", "y").Err(); err != nil {
		t.Fatalf("MSET within one slot: %v", err)
	}
	if err := c.MSet(ctx, "a", "x", "b", "y").Err(); err == nil {
		t.Fatal("MSET across slots succeeded, want CROSSSLOT")
	}
}

// TestSentinelKnowsTheMaster: a Sentinel client finds the master and writes through it.
func TestSentinelKnowsTheMaster(t *testing.T) {
	master := Start(t, Options{Password: "pw"})
	sentinel := StartSentinel(t, master, "main")
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "main", SentinelAddrs: []string{sentinel.Addr}, Password: "pw"})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "via sentinel", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := master.Client(t).Get(ctx, "k").Result(); err != nil || got != "via sentinel" {
		t.Fatalf("master has %q, %v", got, err)
	}
}
