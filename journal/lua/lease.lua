-- The matcher's lease: who may write the output of a partition.
-- KEYS[1] lease   ARGV[1] op: 'acquire' | 'renew' | 'release'   ARGV[2] token   ARGV[3] ms
-- acquire: take it if free (or already ours) -> 1, else 0
-- renew:   extend it if ours -> 1, else 0
-- release: drop it if ours -> 1, else 0
local lease, op, token, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local holder = redis.call('GET', lease)
if op == 'acquire' then
  if holder == false or holder == token then
    redis.call('SET', lease, token, 'PX', ttl)
    return 1
  end
  return 0
end
if holder ~= token then return 0 end
if op == 'renew' then
  redis.call('PEXPIRE', lease, ttl)
else
  redis.call('DEL', lease)
end
return 1
