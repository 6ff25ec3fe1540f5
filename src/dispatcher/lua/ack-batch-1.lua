--[[
  Acknowledges delivered entries, many in one call, but each only while this consumer still owns it.

  KEYS[1] the request stream
  ARGV[1] consumer group
  ARGV[2] consumer name (this dispatcher)
  ARGV[3] "1" to delete the entries from the stream after the ack (keeps the stream from growing), "0" to
          keep them
  ARGV[4..] entry ids, any number (they are passed to XACK and XDEL in chunks)

  Returns one integer per id, in order: 1 when acknowledged, 0 when the entry is not pending on this
  consumer (another dispatcher claimed it after our lease ran out, and it now decides; or the id came
  earlier in the same call), in which case nothing is changed about that entry.
]]
local owned = {}
local seen = {}
local result = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local pending = redis.call("XPENDING", KEYS[1], ARGV[1], id, id, 1)
  -- An id given twice is acknowledged once: the second is no longer pending when the first is.
  if not seen[id] and #pending > 0 and pending[1][2] == ARGV[2] then
    seen[id] = true
    owned[#owned + 1] = id
    result[i - 3] = 1
  else
    result[i - 3] = 0
  end
end
-- Lua's unpack() stops near 8000 values (its C stack), so the ids go to XACK and XDEL a chunk at a time.
local CHUNK = 1000
for first = 1, #owned, CHUNK do
  local last = math.min(first + CHUNK - 1, #owned)
  redis.call("XACK", KEYS[1], ARGV[1], unpack(owned, first, last))
  if ARGV[3] == "1" then
    redis.call("XDEL", KEYS[1], unpack(owned, first, last))
  end
end
return result
