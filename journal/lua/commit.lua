-- The matcher's commit: append output entries, fenced, atomically.
--
-- KEYS[1] output stream   KEYS[2] lease
-- ARGV[1] lease token   ARGV[2] lease ms   ARGV[3] the output's last id this call follows
-- ARGV[4] number of entries n; then per entry: id, ts, events (msgpack), part, parts
--         (part and parts are "" for a whole answer to an input entry, else which piece of
--         how many it is: docs/journal.md)
--
-- Checks first, writes after (Lua has no rollback):
--   the caller must hold the lease                      -> else {'LEASE', holder}
--   the output must end where the caller thinks it does -> else {'FENCED', last id}
-- unless the output already ends with this call's last id: a retry of a call that was
-- applied before the connection dropped -> {'ALREADY'} (the entries are the caller's: only
-- the lease holder writes, and a replay writes the same bytes).
-- On success the lease is extended: {'OK'}.

local out, lease = KEYS[1], KEYS[2]
local token, ttl, follows, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local holder = redis.call('GET', lease)
if holder ~= token then
  return {'LEASE', holder or ''}
end

local last = '0-0'
if redis.call('EXISTS', out) == 1 then
  local info = redis.call('XINFO', 'STREAM', out)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = info[i + 1]
      break
    end
  end
end
if last ~= follows then
  if n > 0 and last == ARGV[5 + 5 * (n - 1)] then
    return {'ALREADY'}
  end
  return {'FENCED', last}
end

for i = 0, n - 1 do
  local at = 5 + 5 * i
  if ARGV[at + 3] == '' then
    redis.call('XADD', out, ARGV[at], 'ts', ARGV[at + 1], 'e', ARGV[at + 2])
  else
    redis.call('XADD', out, ARGV[at], 'ts', ARGV[at + 1], 'e', ARGV[at + 2],
      'part', ARGV[at + 3], 'parts', ARGV[at + 4])
  end
end
redis.call('PEXPIRE', lease, ttl)
return {'OK'}
