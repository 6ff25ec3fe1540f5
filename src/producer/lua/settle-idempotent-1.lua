--[[
  Ends the "accepting" state of an idempotency record once the producer knows whether replicas confirmed
  the write: "accepted" when they did, and otherwise an expired accepting window, so that a retry with
  the same key confirms the same entry again instead of waiting for the window or enqueueing a duplicate.

  Input:
    KEYS[1] the idempotency record
    ARGV[1] the request id the caller settles (a record that was replaced meanwhile is left alone)
    ARGV[2] "accepted" or "unconfirmed"

  Output: 1 when the record was updated, 0 when it is gone or belongs to another request.
]]
if redis.call("HGET", KEYS[1], "id") ~= ARGV[1] then
  return 0
end
if ARGV[2] == "accepted" then
  redis.call("HSET", KEYS[1], "state", "accepted")
else
  redis.call("HSET", KEYS[1], "until", 0)
end
return 1
