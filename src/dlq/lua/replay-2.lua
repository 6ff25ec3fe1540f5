--[[
  Moves dead-lettered entries back to the end of the request stream, in one step each: the entry is
  never in both streams, and never lost between them. The delivery context is dropped, so the replayed
  request starts over with a full set of attempts; its `data` (and any other original field) is kept.
  A `replayedAt` field (ms, Redis clock) is added: the dispatcher counts the max age from it, so an
  entry dead-lettered past its max age can be replayed too.

  KEYS[1] the dead-letter stream
  KEYS[2] the request stream
  ARGV[1..] dead-letter entry ids

  Returns a flat list: for each id, the new stream entry id, "" when no such dead-letter entry exists, or
  "too-long" when the entry has more fields than one XADD can take from Lua (it is left where it is).
]]
-- XADD takes all of an entry's fields at once, and Lua passes at most about 8000 values to one call.
local MAX_VALUES = 7000
local context = {
  attempts = true, firstAttemptAt = true, lastAttemptAt = true, lastStatus = true, lastError = true,
  reason = true, deadLetteredAt = true, sourceEntryId = true, replayedAt = true,
}
local time = redis.call("TIME")
local now = tostring(tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
local result = {}
for i = 1, #ARGV do
  local found = redis.call("XRANGE", KEYS[1], ARGV[i], ARGV[i])
  if #found == 0 then
    result[#result + 1] = ""
  else
    local fields = found[1][2]
    local kept = {}
    for j = 1, #fields, 2 do
      if not context[fields[j]] then
        kept[#kept + 1] = fields[j]
        kept[#kept + 1] = fields[j + 1]
      end
    end
    if #kept == 0 then
      -- Nothing but delivery context: keep the entry as it is rather than writing an empty one.
      result[#result + 1] = ""
    elseif #kept + 2 > MAX_VALUES then
      result[#result + 1] = "too-long"
    else
      kept[#kept + 1] = "replayedAt"
      kept[#kept + 1] = now
      result[#result + 1] = redis.call("XADD", KEYS[2], "*", unpack(kept))
      redis.call("XDEL", KEYS[1], ARGV[i])
    end
  end
end
return result
