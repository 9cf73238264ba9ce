package cache

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/apmkit/apmkit/internal/secret"
)

// The redis_url schemes: redis:// and rediss:// (TLS) are go-redis's (ParseURL) for one
// server. Sentinel and Cluster get a scheme of their own, redis+sentinel:// and
// redis+cluster:// (rediss+... for TLS), so the URL alone says what it names; their query
// parameters are go-redis's ParseFailoverURL's (master_name, addr for more sentinels,
// password for the master's) and ParseClusterURL's (addr for more seed nodes).
const (
	schemeRedis         = "redis"
	schemeRedisTLS      = "rediss"
	redisURLSchemesText = "redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
)

// redisTarget is a parsed redis_url: go-redis's options for one of the three deployments.
type redisTarget struct {
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// parseRedisURL parses redis_url. Its errors show the URL masked (secret.URL), never the
// parser's own message, which would quote the URL with its password.
func parseRedisURL(raw string) (redisTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return redisTarget{}, fmt.Errorf("%s is not a URL", secret.URL(raw))
	}
	base, kind, _ := strings.Cut(u.Scheme, "+")
	if base != schemeRedis && base != schemeRedisTLS {
		return redisTarget{}, fmt.Errorf("%s: scheme %q is not one of %s", secret.URL(raw), u.Scheme, redisURLSchemesText)
	}
	// go-redis's parsers take redis:// and rediss:// only.
	plain := *u
	plain.Scheme = base
	var t redisTarget
	switch kind {
	case "":
		t.single, err = redis.ParseURL(plain.String())
	case "sentinel":
		t.failover, err = redis.ParseFailoverURL(plain.String())
		if err == nil && t.failover.MasterName == "" {
			err = errors.New("a Sentinel URL needs ?master_name= (the name the sentinels monitor)")
		}
	case "cluster":
		t.cluster, err = redis.ParseClusterURL(plain.String())
	default:
		return redisTarget{}, fmt.Errorf("%s: scheme %q is not one of %s", secret.URL(raw), u.Scheme, redisURLSchemesText)
	}
	if err != nil {
		return redisTarget{}, fmt.Errorf("%s: %w", secret.URL(raw), err)
	}
	return t, nil
}

// client builds the go-redis client. Every wait is bounded by timeout and nothing is
// retried, so a call to a slow or absent Redis fails within about timeout and the caller
// falls back at once (see Redis) instead of piling up behind retries.
func (t redisTarget) client(timeout time.Duration) redis.UniversalClient {
	off := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled} // a Redis Cloud feature
	switch {
	case t.failover != nil:
		o := t.failover
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = timeout, timeout, timeout, timeout
		o.ContextTimeoutEnabled, o.MaxRetries, o.DialerRetries = true, -1, 1
		return redis.NewFailoverClient(o) // go-redis turns maintenance notifications off here itself
	case t.cluster != nil:
		o := t.cluster
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = timeout, timeout, timeout, timeout
		o.ContextTimeoutEnabled, o.MaxRetries, o.DialerRetries = true, -1, 1
		o.MaintNotificationsConfig = off
		return redis.NewClusterClient(o)
	}
	o := t.single
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = timeout, timeout, timeout, timeout
	o.ContextTimeoutEnabled, o.MaxRetries, o.DialerRetries = true, -1, 1
	o.MaintNotificationsConfig = off
	return redis.NewClient(o)
}
