-- An operator's decision on one number (dialwatch intercept approve / release).
-- KEYS[1] active entry hash   KEYS[2] pending entry hash   KEYS[3] release hold
-- KEYS[4] audit stream   KEYS[5] active index   KEYS[6] pending index
-- ARGV: op ("approve" | "release"), number, actor, reason, kind (operator | appeal |
--       allowlist), now_ms, grace_ms, audit_min_ms
-- approve: the pending entry becomes active with its own expiry. Returns 1, or 0 when none.
-- release: removes both entries at once and holds the number out for grace_ms. Returns
--   "released" (an active entry went), "rejected" (only a pending one), "none".
local op, number, actor, reason, kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, grace, audit_min = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]

local function audit(event, state, entry)
  redis.call('XADD', KEYS[4], 'MINID', '~', audit_min, '*',
    'event', event, 'number', number, 'state', state, 'actor', actor, 'reason', reason,
    'kind', kind, 'alert_id', entry['alert_id'] or '', 'detector', entry['detector'] or '',
    'episode_id', entry['episode_id'] or '', 'number_class', entry['number_class'] or '',
    'severity', entry['severity'] or '', 'expires_at_ms', entry['expires_at_ms'] or '',
    'at_ms', tostring(now))
end

local function load(key)
  local flat = redis.call('HGETALL', key)
  local entry = {}
  for i = 1, #flat, 2 do entry[flat[i]] = flat[i + 1] end
  return entry, #flat > 0
end

if op == 'approve' then
  local entry, found = load(KEYS[2])
  if not found then return 0 end
  local expires = tonumber(entry['expires_at_ms'])
  if expires <= now then
    redis.call('DEL', KEYS[2])
    redis.call('ZREM', KEYS[6], number)
    return 0
  end
  local flat = redis.call('HGETALL', KEYS[2])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(flat))
  redis.call('HSET', KEYS[1], 'state', 'active', 'approved_by', actor,
    'approved_at_ms', tostring(now))
  redis.call('PEXPIREAT', KEYS[1], expires)
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[6], number)
  redis.call('ZADD', KEYS[5], expires, number)
  audit('approve', 'active', entry)
  return 1
end

local active, was_active = load(KEYS[1])
local pending, was_pending = load(KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[5], number)
redis.call('ZREM', KEYS[6], number)
if grace > 0 then
  redis.call('SET', KEYS[3], kind .. ': ' .. reason, 'PX', grace)
end
if was_active then
  audit('release', 'released', active)
  return 'released'
end
if was_pending then
  audit('reject', 'released', pending)
  return 'rejected'
end
audit(kind == 'allowlist' and 'allowlist' or 'release', 'released', {})
return 'none'
