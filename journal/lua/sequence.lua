-- The sequencer: append a call's commands to the input journal as ONE entry (layout 2).
--
-- KEYS[1] input stream   KEYS[2] set of used (account, ref)   KEYS[3] clock
-- KEYS[4] this call's record (a retried call returns what the first call gave)
-- KEYS[5] the partition's settings (hash: its journal layout, its rules version)
-- KEYS[6] refs of the window (sorted set: dedup key -> ms of first use), rules 3 and on
-- KEYS[7] the seqs of the window's refs (hash: dedup key -> seq), rules 3 and on
-- ARGV[1] number of commands n; ARGV[2] the newest rules version the caller knows;
-- then per command: dedup key ("" if none), payload (msgpack)
--
-- The entry's id is <last seq>-0 and its fields ts (Redis time, ms, never earlier than the
-- last one), n (commands in it), r (the rules version in force: the partition's setting; a
-- brand-new journal starts under the newest the caller knows, one that predates rules
-- versions stays under 1 until an operator moves it on) and c (a msgpack array of their
-- maps, in seq order); its commands hold seqs last-n+1 .. last. After an entry appended by
-- something else with an id <ms>-<sub> whose sub is not 0, seq ms+1 is skipped: the ids
-- <ms+1>-* stay free for the pieces of the next entry's answer (docs/journal.md). The next seq comes from the stream's last entry id, so
-- an entry appended by anything else can never wedge sequencing: the next entry goes after it.
--
-- Checks first, writes after (Lua has no rollback). Ids are decimal text throughout: Lua's
-- numbers are doubles, exact only below 2^53, and a stream id may be any 64-bit number; the
-- next id is formed and checked exactly before anything is written, and a call that cannot
-- be sequenced writes nothing (no refs, no record) and fails with an error.
--
-- Client refs (exchange.rules): under rules 1 and 2 a ref is remembered forever (KEYS[2], a
-- set); from rules 3 within REF_WINDOW_MS of its first use, exactly as the core decides: a
-- ref first used at t is a duplicate at now iff now - t < REF_WINDOW_MS (KEYS[6]). The set
-- of an older journal counts as first used at the first entry under rules 3 (settings field
-- refs_since, the core's rule too), and is dropped once that is out of the window. The
-- call's record is kept as long (a day under the older rules).
--
-- Returns {last, dups, originals}: `last` the seq of the entry's last command as decimal text
-- ("" when every command was a duplicate and nothing was appended), `dups` one character a
-- command, "1" for a command whose (account, ref) was used before (not sequenced), else "0";
-- `originals` the seq each duplicate's ref was first sequenced at, comma-separated, one per
-- "1" ("0" where unknown: under rules 1 and 2, or first used before the seqs were kept), so
-- that a client retrying a request can be given its original outcome.

local stream, refs, clock, record, settings = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local recent, ref_seqs = KEYS[6], KEYS[7]
local LAYOUT = 2
local REF_WINDOW = 3
local REF_WINDOW_MS = 60000
local MAX_COMMANDS = 10000
local MAX_ID = '18446744073709551615'
local PARTITION_IDS = 5
local MAX_PARTITION_SEQ = '99999999999999'

local done = redis.call('GET', record)
if done then
  -- A retried call (perhaps on another connection, after a lost reply): touch the record, a
  -- write the replicas see after the first call's writes, so that a WAIT on this connection
  -- covers them too (WAIT counts only the writes of its own connection).
  local ttl = redis.call('PTTL', record)
  if ttl > 0 then redis.call('PEXPIRE', record, ttl) end
  local sep = string.find(done, '|', 1, true)
  local sep2 = string.find(done, '|', sep + 1, true)
  if not sep2 then return {string.sub(done, 1, sep - 1), string.sub(done, sep + 1), ''} end
  return {string.sub(done, 1, sep - 1), string.sub(done, sep + 1, sep2 - 1),
    string.sub(done, sep2 + 1)}
end

local layout = tonumber(redis.call('HGET', settings, 'layout') or '1')
if layout > LAYOUT then
  return redis.error_reply('exch: this journal is in layout ' .. layout ..
    ', newer than this version writes (' .. LAYOUT .. '): upgrade exch')
end

local n = tonumber(ARGV[1])
if n == nil or n < 1 or n > MAX_COMMANDS or #ARGV ~= 2 + 2 * n then
  return redis.error_reply('exch: a call holds 1 to ' .. MAX_COMMANDS .. ' commands')
end
local rules = redis.call('HGET', settings, 'rules')
local new_journal = redis.call('EXISTS', stream) == 0
if not rules then
  rules = new_journal and ARGV[2] or '1'
end

-- decimal text arithmetic, exact at any size
local function add(text, k)
  local digits = {}
  local carry = k
  for i = #text, 1, -1 do
    local d = string.byte(text, i) - 48 + carry
    digits[i] = d % 10
    carry = math.floor(d / 10)
  end
  local out = table.concat(digits)
  if carry > 0 then out = tostring(carry) .. out end
  return out
end
local function at_most(a, b)
  if #a ~= #b then return #a < #b end
  return a <= b
end

-- the time (before the checks of refs: from rules 3, a ref's age decides)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = tonumber(redis.call('GET', clock) or '0')
if now < before then now = before end
local ts = string.format('%d', now)
local windowed = tonumber(rules) >= REF_WINDOW
local horizon = now - REF_WINDOW_MS
local since = nil
if windowed then since = tonumber(redis.call('HGET', settings, 'refs_since') or '') end
-- the older rules' set: first used at refs_since (or now, if this entry starts rules 3)
local old_live = windowed and (since == nil or since > horizon)
local function used(ref)
  if not windowed then return redis.call('SISMEMBER', refs, ref) == 1 end
  local first = redis.call('ZSCORE', recent, ref)
  if first and tonumber(first) > horizon then return true end
  return old_live and redis.call('SISMEMBER', refs, ref) == 1
end

-- which commands are new: not used before (within the window), and not twice in this call;
-- a duplicate's original seq: from the window's hash, or (twice in this call) the position of
-- the first, made a seq once the entry's first seq is known
local dups = {}
local fresh = {}
local seen = {}
local originals = {}
local k = 0
for i = 0, n - 1 do
  local ref = ARGV[3 + 2 * i]
  if ref ~= '' and seen[ref] then
    dups[#dups + 1] = '1'
    originals[#originals + 1] = seen[ref]
  elseif ref ~= '' and used(ref) then
    dups[#dups + 1] = '1'
    originals[#originals + 1] = windowed and redis.call('HGET', ref_seqs, ref) or '0'
  else
    dups[#dups + 1] = '0'
    k = k + 1
    fresh[k] = i
    if ref ~= '' then seen[ref] = k end
  end
end
dups = table.concat(dups)

local last = ''
local previous = '0'
if k > 0 then
  if not new_journal then
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        local ms, sub = string.match(info[i + 1], '^(%d+)-(%d+)$')
        previous = ms
        if sub ~= '0' then previous = add(previous, 1) end
        break
      end
    end
  end
  last = add(previous, k)
  if not at_most(last, MAX_ID) then
    return redis.error_reply('exch: the journal has no seqs left after ' .. previous)
  end
  -- from rules 5 an order id is partition * 10^14 + seq: a seq must stay below 10^14, or
  -- ids would meet the next partition's
  if tonumber(rules) >= PARTITION_IDS and not at_most(last, MAX_PARTITION_SEQ) then
    return redis.error_reply('exch: the partition has no seqs left after ' .. previous ..
      ' (order ids carry the partition above 10^14; see docs/partitions.md)')
  end
end

-- write
redis.call('SET', clock, ts)
if windowed then
  if since == nil and k > 0 then redis.call('HSET', settings, 'refs_since', ts) end
  if since ~= nil and not old_live then redis.call('UNLINK', refs) end
  local gone = redis.call('ZRANGEBYSCORE', recent, '-inf', horizon)
  for i = 1, #gone, 1000 do
    redis.call('HDEL', ref_seqs, unpack(gone, i, math.min(i + 999, #gone)))
  end
  redis.call('ZREMRANGEBYSCORE', recent, '-inf', horizon)
end
if layout ~= LAYOUT then redis.call('HSET', settings, 'layout', LAYOUT) end
if k > 0 then redis.call('HSET', settings, 'rules', rules) end

if k > 0 then
  local parts = {}
  if k < 16 then
    parts[1] = string.char(0x90 + k)
  elseif k < 65536 then
    parts[1] = string.char(0xdc, math.floor(k / 256), k % 256)
  else
    parts[1] = string.char(0xdd, math.floor(k / 16777216) % 256, math.floor(k / 65536) % 256,
      math.floor(k / 256) % 256, k % 256)
  end
  for j = 1, k do
    local i = fresh[j]
    local ref = ARGV[3 + 2 * i]
    if ref ~= '' then
      if windowed then
        redis.call('ZADD', recent, ts, ref)
        redis.call('HSET', ref_seqs, ref, add(previous, j))
      else
        redis.call('SADD', refs, ref)
      end
    end
    parts[j + 1] = ARGV[4 + 2 * i]
  end
  redis.call('XADD', stream, last .. '-0', 'ts', ts, 'n', k, 'r', rules, 'c',
    table.concat(parts))
end
-- a duplicate of a command earlier in this call: its seq, now that the first seq is known
for i = 1, #originals do
  if type(originals[i]) == 'number' then
    originals[i] = add(previous, originals[i])
  elseif not originals[i] then
    originals[i] = '0'
  end
end
originals = table.concat(originals, ',')
redis.call('SET', record, last .. '|' .. dups .. '|' .. originals, 'EX',
  windowed and REF_WINDOW_MS / 1000 or 86400)
return {last, dups, originals}
