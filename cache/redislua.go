package cache

import "github.com/redis/go-redis/v9"

// redisKeys is the Redis backend's key layout. A full key F (namespace prefix included,
// see namespace.go; binary, any bytes) is stored under data(F); beside the data, four keys
// keep what Redis cannot answer by itself:
//
//	{prefix}k<F>  the value, with the key's TTL (PX)
//	{prefix}i     index: sorted set of every F, all with score 0, so ZRANGEBYLEX walks
//	              them in bytewise order (Scan in ascending order, by prefix, without SCAN)
//	{prefix}e     expiry: sorted set of the F that have a TTL, scored by when they expire
//	              (Redis' clock, ms), so expired keys leave the index and the accounting
//	{prefix}s     sizes: hash F -> len(F)+len(value), what the key counts for the capacity
//	{prefix}u     used: the sum of the sizes, checked against capacity_mb
//
// The braces are a hash tag: Redis Cluster puts every key of one prefix in one hash slot,
// so the scripts below, which touch the data key and the four others at once, run
// atomically there too. The price is that one shard holds all of one prefix's keys.
type redisKeys struct{ tag string }

func newRedisKeys(prefix string) redisKeys { return redisKeys{tag: "{" + prefix + "}"} }

func (k redisKeys) dataPrefix() string      { return k.tag + "k" }
func (k redisKeys) data(full []byte) string { return k.tag + "k" + string(full) }
func (k redisKeys) index() string           { return k.tag + "i" }
func (k redisKeys) used() string            { return k.tag + "u" }

// all is the KEYS of the write scripts: the data key of full, then the four others.
func (k redisKeys) all(full []byte) []string {
	return []string{k.data(full), k.tag + "i", k.tag + "e", k.tag + "s", k.tag + "u"}
}

// meta is the KEYS of the sweep script.
func (k redisKeys) meta() []string {
	return []string{k.tag + "i", k.tag + "e", k.tag + "s", k.tag + "u"}
}

// luaCommon is shared by the scripts that write. Times come from Redis' own clock (TIME),
// so replicas whose clocks differ agree on when a key expires.
const luaCommon = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- sweep forgets up to limit keys whose TTL has passed: their index entry, expiry entry and
-- size, which leaves the used bytes. A key set again since with a later TTL is rescheduled.
local function sweep(dataprefix, index, expiry, sizes, used, limit)
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
  for _, f in ipairs(due) do
    local pttl = redis.call('PTTL', dataprefix .. f)
    if pttl == -2 then
      redis.call('DECRBY', used, tonumber(redis.call('HGET', sizes, f) or '0'))
      redis.call('HDEL', sizes, f)
      redis.call('ZREM', index, f)
      redis.call('ZREM', expiry, f)
    elseif pttl == -1 then
      redis.call('ZREM', expiry, f)
    else
      redis.call('ZADD', expiry, now + pttl, f)
    end
  end
  return #due
end
`

// setScript stores a value: KEYS = redisKeys.all, ARGV = F, value, TTL in ms (0: none),
// capacity in bytes (0: none), the data key prefix, the sweep limit. It returns 1, or 0
// when the value does not fit the capacity even after sweeping expired keys.
var setScript = redis.NewScript(luaCommon + `
local f, val, ttl, cap = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local size = #f + #val
local function fits()
  local used = tonumber(redis.call('GET', KEYS[5]) or '0')
  local old = tonumber(redis.call('HGET', KEYS[4], f) or '0')
  return used - old + size <= cap
end
if cap > 0 and not fits() then
  sweep(ARGV[5], KEYS[2], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[6]))
  if not fits() then return 0 end
end
local old = tonumber(redis.call('HGET', KEYS[4], f) or '0')
if ttl > 0 then
  redis.call('SET', KEYS[1], val, 'PX', ARGV[3])
  redis.call('ZADD', KEYS[3], now_ms() + ttl, f)
else
  redis.call('SET', KEYS[1], val)
  redis.call('ZREM', KEYS[3], f)
end
redis.call('ZADD', KEYS[2], 0, f)
redis.call('HSET', KEYS[4], f, size)
redis.call('INCRBY', KEYS[5], size - old)
return 1
`)

// deleteScript removes a key: KEYS = redisKeys.all, ARGV = F.
var deleteScript = redis.NewScript(`
local f = ARGV[1]
local old = tonumber(redis.call('HGET', KEYS[4], f) or '0')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], f)
redis.call('ZREM', KEYS[3], f)
redis.call('HDEL', KEYS[4], f)
redis.call('DECRBY', KEYS[5], old)
return 1
`)

// sweepScript runs sweep: KEYS = redisKeys.meta, ARGV = the data key prefix, the limit. It
// returns how many expiry entries it looked at.
var sweepScript = redis.NewScript(luaCommon + `
return sweep(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[2]))
`)

// readScript reads the values and remaining TTLs of data keys (KEYS) in one step, so a
// value and its TTL belong together: a flat list of value, PTTL pairs, PTTL -2 (and an
// empty value) for a key that is gone. It stops after the pair that brings the values past
// ARGV[1] bytes, so a page of big values stays bounded; the caller asks again for the rest.
var readScript = redis.NewScript(`
local out, total, budget = {}, 0, tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  if total >= budget then break end
  local v = redis.call('GET', k)
  if v then
    out[#out + 1] = v
    out[#out + 1] = redis.call('PTTL', k)
    total = total + #v
  else
    out[#out + 1] = ''
    out[#out + 1] = -2
  end
end
return out
`)
