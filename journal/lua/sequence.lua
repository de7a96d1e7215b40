-- The sequencer: append commands to the input journal, atomically, many per call.
--
-- KEYS[1] input stream   KEYS[2] set of used (account, ref)   KEYS[3] clock
-- KEYS[4] this batch's record (a retried call returns what the first call gave)
-- ARGV[1] number of commands n; then per command: dedup key ("" if none), payload (msgpack)
--
-- The next seq comes from the stream's last entry id, so an entry appended by anything else
-- can never wedge sequencing: the next command simply goes after it. Every command of the
-- call gets the same envelope time: Redis time in ms, never earlier than the last one.
-- Returns one integer per command: its seq, or 0 if its (account, ref) was used before.

local stream, refs, clock, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local done = redis.call('GET', record)
if done then
  local seqs = {}
  for s in string.gmatch(done, '[^,]+') do seqs[#seqs + 1] = tonumber(s) end
  return seqs
end

local last = 0
if redis.call('EXISTS', stream) == 1 then
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = tonumber(string.match(info[i + 1], '^(%d+)'))
      break
    end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = tonumber(redis.call('GET', clock) or '0')
if now < before then now = before end
local ts = string.format('%d', now)
redis.call('SET', clock, ts)

local n = tonumber(ARGV[1])
local seqs = {}
local seq = last
for i = 0, n - 1 do
  local ref = ARGV[2 + 2 * i]
  if ref ~= '' and redis.call('SADD', refs, ref) == 0 then
    seqs[#seqs + 1] = 0
  else
    seq = seq + 1
    redis.call('XADD', stream, string.format('%d-0', seq), 'ts', ts, 'c', ARGV[3 + 2 * i])
    seqs[#seqs + 1] = seq
  end
end
redis.call('SET', record, table.concat(seqs, ','), 'EX', 86400)
return seqs
