-- Replace complaint blobs of one partition's numbers if none changed since they were read.
-- KEYS[1] = complaints hash
-- ARGV[1] = hash TTL ms, then triples (number, expected blob or '', new blob)
-- Returns 1 when written, 0 (nothing written) when any blob differs from the expected one.
for i = 2, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if current ~= ARGV[i + 1] then
    return 0
  end
end
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
