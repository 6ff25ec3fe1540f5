--[[
  Acknowledges a delivered entry, but only while this consumer still owns it.

  KEYS[1] the request stream
  ARGV[1] consumer group
  ARGV[2] consumer name (this dispatcher)
  ARGV[3] entry id
  ARGV[4] "1" to delete the entry from the stream after the ack (keeps the stream from growing), "0" to keep it

  Returns 1 when acknowledged, 0 when the entry is no longer pending on this consumer (another dispatcher
  claimed it after our lease ran out; it now decides), in which case nothing is changed.
]]
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
redis.call("XACK", KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == "1" then
  redis.call("XDEL", KEYS[1], ARGV[3])
end
return 1
