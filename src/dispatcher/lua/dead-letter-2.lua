--[[
  Moves an entry that will not be delivered from the stream to the dead-letter stream, in one step.

  KEYS[1] the request stream
  KEYS[2] the dead-letter stream
  ARGV[1] consumer group
  ARGV[2] consumer name (this dispatcher)
  ARGV[3] entry id
  ARGV[4..] the dead-letter entry's flat field list (the original fields, then the delivery context), at
          most MAX_VALUES values

  Returns the dead-letter entry id; false when the entry is no longer pending on this consumer; or -1
  when the field list is longer than one XADD can take from Lua. In the last two cases nothing is changed.
]]
-- XADD takes all of an entry's fields at once, and Lua passes at most about 8000 values to one call (its
-- C stack): past that, refuse with a status the caller can act on, rather than fail inside the script.
local MAX_VALUES = 7000
if #ARGV - 3 > MAX_VALUES then
  return -1
end
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return false
end
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call("XADD", KEYS[2], "*", unpack(fields))
redis.call("XACK", KEYS[1], ARGV[1], ARGV[3])
redis.call("XDEL", KEYS[1], ARGV[3])
return id
