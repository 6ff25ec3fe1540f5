--[[
  Keeps this dispatcher's claim on the entries it is delivering: resets their idle time so that other
  dispatchers do not take them over (XAUTOCLAIM) while the delivery is still running. An entry another
  dispatcher already took is left alone and reported, so that we do not acknowledge it later.

  KEYS[1] the request stream
  ARGV[1] consumer group
  ARGV[2] consumer name (this dispatcher)
  ARGV[3..] entry ids in flight

  Returns the ids that are no longer pending on this consumer.
]]
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local pending = redis.call("XPENDING", KEYS[1], ARGV[1], id, id, 1)
  if #pending == 0 or pending[1][2] ~= ARGV[2] then
    lost[#lost + 1] = id
  else
    redis.call("XCLAIM", KEYS[1], ARGV[1], ARGV[2], 0, id, "JUSTID")
  end
end
return lost
