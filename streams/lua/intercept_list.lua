-- Apply one alert's change to the interception list, once per alert_id (README "Interception").
-- KEYS[1] active entry hash   KEYS[2] pending entry hash   KEYS[3] release hold
-- KEYS[4] applied alert ids (zset id -> ms)   KEYS[5] breaker (zset number -> ms)
-- KEYS[6] breaker-open flag   KEYS[7] audit stream   KEYS[8] active index   KEYS[9] pending index
-- ARGV: op ("list" | "clear"), alert_id, number, mode ("auto" | "approve"), now_ms,
--       expires_at_ms, escalated ("1" | "0"), breaker_max, breaker_window_ms, applied_keep_ms,
--       audit_min_ms, detector, episode_id, number_class, severity, reason
-- Returns {outcome, breaker_tripped_now}; outcome: dup, held, added, extended, pending,
--   cleared, noop.
local op, alert_id, number, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, expires = tonumber(ARGV[5]), tonumber(ARGV[6])
local escalated = ARGV[7] == '1'
local breaker_max, window = tonumber(ARGV[8]), tonumber(ARGV[9])
local keep, audit_min = tonumber(ARGV[10]), ARGV[11]
local detector, episode, class, severity, reason = ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16]

if redis.call('ZSCORE', KEYS[4], alert_id) then
  return {'dup', 0}
end
redis.call('ZADD', KEYS[4], now, alert_id)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)

local function audit(event, state, why)
  redis.call('XADD', KEYS[7], 'MINID', '~', audit_min, '*',
    'event', event, 'number', number, 'state', state, 'actor', 'worker', 'reason', why,
    'alert_id', alert_id, 'detector', detector, 'episode_id', episode,
    'number_class', class, 'severity', severity, 'expires_at_ms', tostring(expires),
    'at_ms', tostring(now))
end

local function write(key, state)
  redis.call('HSET', key, 'number', number, 'state', state, 'reason', reason,
    'alert_id', alert_id, 'detector', detector, 'episode_id', episode, 'number_class', class,
    'severity', severity, 'listed_at_ms', tostring(now), 'expires_at_ms', tostring(expires))
  redis.call('PEXPIREAT', key, expires)
end

if op == 'clear' then
  local out = 'noop'
  for i, key in ipairs({KEYS[1], KEYS[2]}) do
    if redis.call('HGET', key, 'episode_id') == episode then
      redis.call('HSET', key, 'expires_at_ms', tostring(expires))
      redis.call('PEXPIREAT', key, expires)
      redis.call('ZADD', KEYS[7 + i], expires, number)
      out = 'cleared'
    end
  end
  if out == 'cleared' then
    audit('clear', 'active', 'episode cleared: expires ' .. ARGV[6])
  end
  return {out, 0}
end

if redis.call('EXISTS', KEYS[3]) == 1 and not escalated then
  audit('withheld', 'released', 'released number within its grace period: ' ..
    (redis.call('GET', KEYS[3]) or ''))
  return {'held', 0}
end

-- Already active: the entry follows the newest alert and never expires sooner.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local old = tonumber(redis.call('HGET', KEYS[1], 'expires_at_ms') or '0')
  if old > expires then expires = old end
  local listed = redis.call('HGET', KEYS[1], 'listed_at_ms') or tostring(now)
  write(KEYS[1], 'active')
  redis.call('HSET', KEYS[1], 'listed_at_ms', listed)
  redis.call('ZADD', KEYS[8], expires, number)
  audit('extend', 'active', reason)
  return {'extended', 0}
end

local tripped_now = 0
local why = reason
if mode == 'auto' then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
  if redis.call('ZSCORE', KEYS[5], number) == false and
      redis.call('ZCARD', KEYS[5]) >= breaker_max then
    mode = 'approve'
    why = 'breaker open (' .. breaker_max .. ' auto-listings within ' .. (window / 1000) ..
      ' s): waits for approval; ' .. reason
    if redis.call('SET', KEYS[6], tostring(now), 'PX', window, 'NX') then
      tripped_now = 1
      redis.call('XADD', KEYS[7], 'MINID', '~', audit_min, '*',
        'event', 'breaker', 'number', '', 'state', 'open', 'actor', 'worker',
        'reason', 'more than ' .. breaker_max .. ' numbers auto-listed within ' ..
        (window / 1000) .. ' s: new entries wait for approval',
        'alert_id', alert_id, 'detector', detector, 'episode_id', '', 'number_class', '',
        'severity', 'critical', 'expires_at_ms', tostring(now + window), 'at_ms', tostring(now))
    end
  else
    redis.call('ZADD', KEYS[5], now, number)
  end
end

if mode == 'approve' then
  local listed = redis.call('HGET', KEYS[2], 'listed_at_ms')
  local old = tonumber(redis.call('HGET', KEYS[2], 'expires_at_ms') or '0')
  if old > expires then expires = old end
  write(KEYS[2], 'pending')
  redis.call('HSET', KEYS[2], 'reason', why, 'listed_at_ms', listed or tostring(now))
  redis.call('ZADD', KEYS[9], expires, number)
  audit('pending', 'pending', why)
  return {'pending', tripped_now}
end
write(KEYS[1], 'active')
redis.call('ZADD', KEYS[8], expires, number)
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('ZREM', KEYS[9], number)
end
audit('add', 'active', reason)
return {'added', tripped_now}
