"""Lua scripts of the Redis Streams backend; each runs atomically on the server.

Keys (one hash tag per queue): ``stream`` (entries with fields ``id``, ``fw``, ``r`` = record
JSON), ``ids`` (hash record id -> entry id), ``acked`` (zset record id -> ack time),
``unacked`` (zset record id -> created_at), ``frameworks`` (hash framework -> unacked count).
"""

# KEYS: stream, ids, unacked, frameworks. ARGV: (id, created_at, framework, json) repeated.
PRODUCE = """
local added = 0
for i = 1, #ARGV, 4 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    local eid = redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'fw', ARGV[i + 2], 'r', ARGV[i + 3])
    redis.call('HSET', KEYS[2], ARGV[i], eid)
    redis.call('ZADD', KEYS[3], ARGV[i + 1], ARGV[i])
    redis.call('HINCRBY', KEYS[4], ARGV[i + 2], 1)
    added = added + 1
  end
end
return added
"""

# KEYS: stream, acked. ARGV: group, consumer, horizon_ms, lease idle_ms, count, cursor.
# Claims expired or released entries (idle >= horizon) from ``cursor`` on; once that scan is
# done (cursor ''), reads new entries. Each claimed entry gets idle = horizon - lease, so it
# becomes claimable again exactly when its lease ends. Entries already acked (seen again if
# the group was recreated) are acked and skipped.
# Returns {cursor, {{eid, json, deliveries}...}, entries scanned}.
LEASE = """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local count, cursor = tonumber(ARGV[5]), ARGV[6]
local entries = {}
if cursor ~= '' then
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[3], cursor, 'COUNT', count)
  cursor = r[1]
  if cursor == '0-0' then cursor = '' end
  entries = r[2]
end
if cursor == '' and #entries < count then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #entries,
                       'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do table.insert(entries, e) end
  end
end
local out = {}
for _, e in ipairs(entries) do
  local f = {}
  for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
  if redis.call('ZSCORE', KEYS[2], f['id']) then
    redis.call('XACK', stream, group, e[1])
  else
    redis.call('XCLAIM', stream, group, consumer, 0, e[1], 'IDLE', ARGV[4], 'JUSTID')
    local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
    table.insert(out, {e[1], f['r'], p[1][4]})
  end
end
return {cursor, out, #entries}
"""

# KEYS: stream, ids, acked, unacked, frameworks. ARGV: group, now, record ids...
ACK = """
local acked = 0
for i = 3, #ARGV do
  local eid = redis.call('HGET', KEYS[2], ARGV[i])
  if eid and redis.call('XACK', KEYS[1], ARGV[1], eid) == 1 then
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[i])
    redis.call('ZREM', KEYS[4], ARGV[i])
    local e = redis.call('XRANGE', KEYS[1], eid, eid)[1]
    if e then
      for j = 1, #e[2], 2 do
        if e[2][j] == 'fw' and redis.call('HINCRBY', KEYS[5], e[2][j + 1], -1) <= 0 then
          redis.call('HDEL', KEYS[5], e[2][j + 1])
        end
      end
    end
    acked = acked + 1
  end
end
return acked
"""

# KEYS: stream. ARGV: group, horizon_ms, page size, consumer ('' = every consumer).
# Releases live leases (PEL entries idle below horizon): idle set to horizon, so the next
# lease claims them at once; JUSTID keeps their delivery counts. Atomic, so an entry whose
# lease ends meanwhile cannot be taken from a consumer that just claimed it.
RELEASE = """
local stream, group = KEYS[1], ARGV[1]
local horizon, page = tonumber(ARGV[2]), tonumber(ARGV[3])
local start, released = '-', 0
while true do
  local entries
  if ARGV[4] == '' then
    entries = redis.call('XPENDING', stream, group, start, '+', page)
  else
    entries = redis.call('XPENDING', stream, group, start, '+', page, ARGV[4])
  end
  for _, p in ipairs(entries) do
    if tonumber(p[3]) < horizon then
      redis.call('XCLAIM', stream, group, p[2], 0, p[1], 'IDLE', horizon, 'JUSTID')
      released = released + 1
    end
  end
  if #entries < page then return released end
  start = '(' .. entries[#entries][1]
end
"""

# KEYS: stream, ids, acked. ARGV: acked record ids to delete.
PRUNE = """
local removed = 0
for i = 1, #ARGV do
  if redis.call('ZSCORE', KEYS[3], ARGV[i]) then
    local eid = redis.call('HGET', KEYS[2], ARGV[i])
    if eid then redis.call('XDEL', KEYS[1], eid) end
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[3], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""

# KEYS: stream, ids, acked, unacked, frameworks. ARGV: group, now, record id.
# Retires one record a reviewer rejected, whether it was delivered or not: XACK if pending,
# then the same bookkeeping as ACK. A never-delivered entry is XACKed by LEASE when reached
# (it finds the id in the acked zset). Returns 1 if retired now, 0 if unknown or acked.
RETIRE = """
local eid = redis.call('HGET', KEYS[2], ARGV[3])
if not eid or redis.call('ZSCORE', KEYS[3], ARGV[3]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], eid)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[3])
local e = redis.call('XRANGE', KEYS[1], eid, eid)[1]
if e then
  for j = 1, #e[2], 2 do
    if e[2][j] == 'fw' and redis.call('HINCRBY', KEYS[5], e[2][j + 1], -1) <= 0 then
      redis.call('HDEL', KEYS[5], e[2][j + 1])
    end
  end
end
return 1
"""
