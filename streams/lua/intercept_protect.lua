-- Apply one alert's change to a victim's protection entry, once per alert_id.
-- KEYS[1] protection hash (field = a caller to reject on calls to the victim; "_"-fields: meta)
-- KEYS[2] applied alert ids   KEYS[3] audit stream   KEYS[4] protection index (victim -> ms)
-- ARGV: op ("protect" | "member" | "clear"), alert_id, victim, pseudonym, caller, now_ms,
--       expires_at_ms, applied_keep_ms, audit_min_ms, detector, episode_id
-- Returns the outcome: dup, protected, member, cleared, noop. Audit entries name the victim by
-- pseudonym only.
local op, alert_id, victim, shown, caller = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, expires, keep = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local audit_min, detector, episode = ARGV[9], ARGV[10], ARGV[11]

if redis.call('ZSCORE', KEYS[2], alert_id) then
  return 'dup'
end
redis.call('ZADD', KEYS[2], now, alert_id)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - keep)

local function audit(event, why)
  redis.call('XADD', KEYS[3], 'MINID', '~', audit_min, '*',
    'event', event, 'number', shown, 'state', 'active', 'actor', 'worker', 'reason', why,
    'alert_id', alert_id, 'detector', detector, 'episode_id', episode, 'caller', caller,
    'expires_at_ms', tostring(expires), 'at_ms', tostring(now))
end

local function extend()
  local old = tonumber(redis.call('HGET', KEYS[1], '_expires_at_ms') or '0')
  if old > expires then expires = old end
  redis.call('HSET', KEYS[1], '_expires_at_ms', tostring(expires))
  redis.call('PEXPIREAT', KEYS[1], expires)
  redis.call('ZADD', KEYS[4], expires, victim)
end

if op == 'clear' then
  if redis.call('HGET', KEYS[1], '_episode_id') ~= episode then
    return 'noop'
  end
  redis.call('HSET', KEYS[1], '_expires_at_ms', tostring(expires))
  redis.call('PEXPIREAT', KEYS[1], expires)
  redis.call('ZADD', KEYS[4], expires, victim)
  audit('unprotect_due', 'bombing cleared: protection expires ' .. ARGV[7])
  return 'cleared'
end
if op == 'protect' then
  redis.call('HSET', KEYS[1], '_pseudonym', shown, '_alert_id', alert_id, '_detector', detector,
    '_episode_id', episode, '_protected_at_ms', tostring(now))
  extend()
  audit('protect', 'victim protected from its flooding callers')
  return 'protected'
end
redis.call('HSET', KEYS[1], caller, alert_id)
if redis.call('HEXISTS', KEYS[1], '_pseudonym') == 0 then
  redis.call('HSET', KEYS[1], '_pseudonym', shown, '_episode_id', episode)
end
extend()
audit('protect_member', 'flooding caller rejected on calls to the victim')
return 'member'
