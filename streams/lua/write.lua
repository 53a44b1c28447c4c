-- Apply one batch's changes to one partition's hash slot, all or nothing, fenced on the offset.
-- KEYS[1] = meta hash, KEYS[2] = episodes hash, KEYS[3] = due zset, KEYS[4] = outbox hash,
-- KEYS[5..4+k] = window keys
-- ARGV[1] = expected stored offset ('-1' when none), ARGV[2] = new offset, ARGV[3] = newest ms,
-- ARGV[4] = window key TTL ms, ARGV[5] = partition keys TTL ms, ARGV[6] = k,
-- ARGV[7..6+k] = window blobs ('' deletes), then m, then m triples of
-- (number, episodes blob or '', close time ms or ''), then q, then q pairs of
-- (source field 's<M>', newest ms from that source) for the meta hash, then r, then r pairs of
-- (alert_id, alert JSON) for the outbox, then the held observations of stage 2's canonical
-- order ('held', '' deletes), then the expected and the new repartition-input offset ('roff',
-- stage 1; '-1' when none)
-- Returns {1} when applied, {0, stored offset} when the fence failed.
local stored = redis.call('HGET', KEYS[1], 'off') or '-1'
local rstored = redis.call('HGET', KEYS[1], 'roff') or '-1'
if stored ~= ARGV[1] or rstored ~= ARGV[#ARGV - 1] then
  return {0, stored .. '/' .. rstored}
end
local ttl = tonumber(ARGV[4])
local k = tonumber(ARGV[6])
for i = 1, k do
  local blob = ARGV[6 + i]
  if blob == '' then
    redis.call('DEL', KEYS[4 + i])
  else
    redis.call('SET', KEYS[4 + i], blob, 'PX', ttl)
  end
end
local base = 7 + k
local m = tonumber(ARGV[base])
for j = 0, m - 1 do
  local number, blob, close_at = ARGV[base + 1 + 3 * j], ARGV[base + 2 + 3 * j], ARGV[base + 3 + 3 * j]
  if blob == '' then
    redis.call('HDEL', KEYS[2], number)
    redis.call('ZREM', KEYS[3], number)
  else
    redis.call('HSET', KEYS[2], number, blob)
    redis.call('ZADD', KEYS[3], close_at, number)
  end
end
redis.call('HSET', KEYS[1], 'off', ARGV[2], 'newest', ARGV[3])
local sbase = base + 1 + 3 * m
local q = tonumber(ARGV[sbase])
for j = 1, q do
  redis.call('HSET', KEYS[1], ARGV[sbase + 2 * j - 1], ARGV[sbase + 2 * j])
end
local obase = sbase + 1 + 2 * q
local r = tonumber(ARGV[obase])
for j = 1, r do
  redis.call('HSET', KEYS[4], ARGV[obase + 2 * j - 1], ARGV[obase + 2 * j])
end
if ARGV[#ARGV - 2] == '' then
  redis.call('HDEL', KEYS[1], 'held')
else
  redis.call('HSET', KEYS[1], 'held', ARGV[#ARGV - 2])
end
if ARGV[#ARGV] ~= '-1' then
  redis.call('HSET', KEYS[1], 'roff', ARGV[#ARGV])
end
local keep = tonumber(ARGV[5])
for i = 1, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], keep)
  end
end
return {1}
