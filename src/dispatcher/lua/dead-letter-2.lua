--[[
  Moves an entry that will not be delivered from the stream to the dead-letter stream, in one step.

  KEYS[1] the request stream
  KEYS[2] the dead-letter stream
  ARGV[1] consumer group
  ARGV[2] consumer name (this dispatcher)
  ARGV[3] entry id
  ARGV[4..] the dead-letter entry's flat field list (the original fields, then the delivery context)

  Returns the dead-letter entry id, or false when the entry is no longer pending on this consumer, in
  which case nothing is changed.
]]
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
