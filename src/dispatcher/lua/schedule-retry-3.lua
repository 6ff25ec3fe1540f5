--[[
  Moves an entry that must be tried again from the stream to the retry schedule, in one step: it is
  never in both places, and never in neither.

  KEYS[1] the request stream
  KEYS[2] the retry schedule (sorted set: member -> due time in ms, Redis server clock)
  KEYS[3] the retry entries (hash: member -> JSON array of the entry's flat field list)
  ARGV[1] consumer group
  ARGV[2] consumer name (this dispatcher)
  ARGV[3] entry id
  ARGV[4] delay in ms before the entry is due again
  ARGV[5..] the flat field list to re-add (data first, then attempts and the delivery context). It is
          made JSON here, so the dispatcher sends the fields as it holds them rather than building a
          copy of the whole entry (a body of megabytes) only to have it stored.

  Returns the due time (ms, Redis clock), or 0 when the entry is no longer pending on this consumer, in
  which case nothing is changed.
]]
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = now + tonumber(ARGV[4])
-- The entry id is unique, so it is a safe member name even when one request is retried many times.
redis.call("HSET", KEYS[3], ARGV[3], cjson.encode(fields))
redis.call("ZADD", KEYS[2], due, ARGV[3])
redis.call("XACK", KEYS[1], ARGV[1], ARGV[3])
redis.call("XDEL", KEYS[1], ARGV[3])
return due
