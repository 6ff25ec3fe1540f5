--[[
  Moves retries that are due from the retry schedule back to the end of the request stream, where any
  dispatcher reads them like new entries. Safe to run from every dispatcher at once.

  A retry that cannot be re-added (not a JSON field list, or more fields than one XADD can take from
  Lua) is moved to the dead-letter stream instead, with reason `malformed`: one bad member must not fail
  the call, or no retry of any service would ever be promoted again. Its `data` is kept (or, when the
  member is not a field list, the member's text as it was, to be looked at), `droppedFields` counts the
  fields left out, `lastError` says why.

  KEYS[1] the request stream
  KEYS[2] the retry schedule (sorted set: member -> due time in ms, Redis server clock)
  KEYS[3] the retry entries (hash: member -> JSON array of the entry's flat field list)
  KEYS[4] the dead-letter stream
  ARGV[1] how many to move at most

  Returns { moved, next, now, deadLettered }: the retries moved back; the due time of the earliest retry
  still waiting (ms, Redis clock), or -1 when none waits; the current Redis time; the retries moved to
  the dead-letter stream instead.
]]
-- XADD takes all of an entry's fields at once, and Lua passes at most about 8000 values to one call.
local MAX_VALUES = 7000

-- The dead letter's reason (decide.ts's DeadLetterReason).
local MALFORMED = "malformed"
local NOT_A_LIST = "the retry entry is not a flat field list of strings"

-- Why a decoded member cannot be re-added as it is, or nil when it can.
local function problemWith(fields)
  if type(fields) ~= "table" or #fields == 0 or #fields % 2 ~= 0 then
    return NOT_A_LIST
  end
  for i = 1, #fields do
    local kind = type(fields[i])
    if kind ~= "string" and kind ~= "number" then
      return NOT_A_LIST
    end
  end
  if #fields > MAX_VALUES then
    return "the retry entry has too many fields (" .. (#fields / 2) .. ") to be re-added"
  end
  return nil
end

-- The dead letter for a member that cannot be re-added: `data` first, as in every entry.
local function deadLetterFor(member, encoded, fields, problem, now)
  local kept = {}
  if problem == NOT_A_LIST or fields == nil then
    -- Nothing can be read out of it: keep its text whole.
    kept[#kept + 1] = "data"
    kept[#kept + 1] = encoded
  else
    -- A field list too long: keep the request, count the rest.
    local dropped = #fields / 2
    for i = 1, #fields, 2 do
      if fields[i] == "data" then
        kept[#kept + 1] = "data"
        kept[#kept + 1] = fields[i + 1]
        dropped = dropped - 1
        break
      end
    end
    kept[#kept + 1] = "droppedFields"
    kept[#kept + 1] = tostring(dropped)
  end
  kept[#kept + 1] = "reason"
  kept[#kept + 1] = MALFORMED
  kept[#kept + 1] = "lastError"
  kept[#kept + 1] = problem
  kept[#kept + 1] = "deadLetteredAt"
  kept[#kept + 1] = tostring(now)
  kept[#kept + 1] = "sourceEntryId"
  kept[#kept + 1] = member
  return kept
end

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now, "LIMIT", 0, tonumber(ARGV[1]))
local moved = 0
local deadLettered = 0
for _, member in ipairs(due) do
  local encoded = redis.call("HGET", KEYS[3], member)
  if encoded then
    local decoded, fields = pcall(cjson.decode, encoded)
    local problem = "the retry entry is not JSON"
    if decoded then
      problem = problemWith(fields)
    else
      fields = nil
    end
    if problem == nil then
      redis.call("XADD", KEYS[1], "*", unpack(fields))
      moved = moved + 1
    else
      redis.call("XADD", KEYS[4], "*", unpack(deadLetterFor(member, encoded, fields, problem, now)))
      deadLettered = deadLettered + 1
    end
  end
  redis.call("ZREM", KEYS[2], member)
  redis.call("HDEL", KEYS[3], member)
end
local nextDue = -1
local first = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if #first > 0 then
  nextDue = tonumber(first[2])
end
return { moved, nextDue, now, deadLettered }
