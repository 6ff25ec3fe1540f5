--[[
  Moves retries that are due from the retry schedule back to the end of the request stream, where any
  dispatcher reads them like new entries. Safe to run from every dispatcher at once.

  KEYS[1] the request stream
  KEYS[2] the retry schedule (sorted set: member -> due time in ms, Redis server clock)
  KEYS[3] the retry entries (hash: member -> JSON array of the entry's flat field list)
  ARGV[1] how many to move at most

  Returns { moved, next } where next is the due time of the earliest retry still waiting (ms, Redis
  clock), or -1 when none waits, and the current Redis time as a third element.
]]
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now, "LIMIT", 0, tonumber(ARGV[1]))
local moved = 0
for _, member in ipairs(due) do
  local encoded = redis.call("HGET", KEYS[3], member)
  if encoded then
    local fields = cjson.decode(encoded)
    redis.call("XADD", KEYS[1], "*", unpack(fields))
    moved = moved + 1
  end
  redis.call("ZREM", KEYS[2], member)
  redis.call("HDEL", KEYS[3], member)
end
local nextDue = -1
local first = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if #first > 0 then
  nextDue = tonumber(first[2])
end
return { moved, nextDue, now }
