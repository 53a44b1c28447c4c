-- Read the state a batch needs from one partition's hash slot.
-- KEYS[1] = episodes hash, KEYS[2] = due zset, KEYS[3] = complaints hash,
-- KEYS[4..] = window keys of the batch's numbers
-- ARGV[1] = close episodes due at or before this time (ms), ARGV[2] = max due entries,
-- ARGV[3..] = the batch's numbers (fields of the hashes), in KEYS[4..] order
-- Returns {windows blobs, episode blobs, {due number, close time, due episodes blob, ...},
-- complaint blobs}
local n = #KEYS - 3
local windows, episodes, complaints = {}, {}, {}
if n > 0 then
  windows = redis.call('MGET', unpack(KEYS, 4))
  episodes = redis.call('HMGET', KEYS[1], unpack(ARGV, 3))
  complaints = redis.call('HMGET', KEYS[3], unpack(ARGV, 3))
end
local due = {}
local scored = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
if #scored > 0 then
  local members = {}
  for i = 1, #scored, 2 do
    members[#members + 1] = scored[i]
  end
  local blobs = redis.call('HMGET', KEYS[1], unpack(members))
  for i, member in ipairs(members) do
    due[#due + 1] = member
    due[#due + 1] = scored[2 * i]
    due[#due + 1] = blobs[i] or ''
  end
end
return {windows, episodes, due, complaints}
