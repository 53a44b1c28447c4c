-- Add contacts to the subscribers' circles of one day (streams.circles, detectors.circles).
-- KEYS[1] = the day's hash {prefix}:{p<N>}:cc:<day> (field: a subscriber's 8-byte hash,
-- value: its contacts, 12 bytes each: 8-byte hash, 4-byte newest second, sorted by hash)
-- ARGV[1] = time to live (ms, from this write), ARGV[2] = most contacts kept, ARGV[3..] = field, contacts, ...
-- A set union: newest second per hash, cut to the smallest hashes; the same whatever order.
local cap = tonumber(ARGV[2])
local function parse(blob, into)
  if not blob then return end
  for i = 1, #blob - 11, 12 do
    local hi, lo, t = struct.unpack('>I4I4I4', blob, i)
    local h = string.sub(blob, i, i + 7)
    local seen = into[h]
    if seen == nil or seen[3] < t then
      into[h] = {hi, lo, t}
    end
  end
end
for a = 3, #ARGV, 2 do
  local field = ARGV[a]
  local entries = {}
  parse(redis.call('HGET', KEYS[1], field), entries)
  parse(ARGV[a + 1], entries)
  local list = {}
  for _, e in pairs(entries) do list[#list + 1] = e end
  table.sort(list, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return x[2] < y[2]
  end)
  local out = {}
  for i = 1, math.min(cap, #list) do
    out[i] = struct.pack('>I4I4I4', list[i][1], list[i][2], list[i][3])
  end
  redis.call('HSET', KEYS[1], field, table.concat(out))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
