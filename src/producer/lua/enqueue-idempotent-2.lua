--[[
  Enqueues a request under an Idempotency-Key, or answers from the key's record, atomically: the stream
  entry and the record are written together or not at all, and they replicate together.

  Input:
    KEYS[1] the request stream
    KEYS[2] the key's idempotency record (hash: state, id, fingerprint, until, entry)

    ARGV[1] fingerprint of the request (SHA-256 of method, target URL and body)
    ARGV[2] request id for a new request
    ARGV[3] envelope (the stream entry's `data` field)
    ARGV[4] record time to live, ms
    ARGV[5] accepting window, ms: how long the producer may spend confirming the write with replicas
            (WAIT); 0 when it does not wait for replicas

  Output: { outcome, id }
    "new"          the request was added to the stream under id ARGV[2]
    "replay"       the key was accepted before with the same fingerprint; id is the first request's
    "mismatch"     the key was used before with a different request; id is ""
    "in-progress"  the same request is still being confirmed by another call; id is the first request's
    "confirm"      the same request was stored before but its replication was never confirmed (WAIT fell
                   short, or the producer died while waiting); the caller must WAIT again and settle.
                   Marking it "accepting" here is a write, so that WAIT covers the original entry too.

  Record states: "accepting" (stored, replication not yet confirmed; `until` bounds the attempt) and
  "accepted" (the 202 was or may be given).
]]
local streamKey = KEYS[1]
local recordKey = KEYS[2]
local fingerprint = ARGV[1]
local id = ARGV[2]
local envelope = ARGV[3]
local ttl = tonumber(ARGV[4])
local acceptingMs = tonumber(ARGV[5])

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local record = redis.call("HMGET", recordKey, "state", "id", "fingerprint", "until")
local state, firstId, firstFingerprint, untilMs = record[1], record[2], record[3], record[4]

if firstId then
  if firstFingerprint ~= fingerprint then
    return { "mismatch", "" }
  end
  if state == "accepted" then
    return { "replay", firstId }
  end
  if tonumber(untilMs or "0") > now then
    return { "in-progress", firstId }
  end
  if acceptingMs == 0 then
    redis.call("HSET", recordKey, "state", "accepted")
    return { "replay", firstId }
  end
  redis.call("HSET", recordKey, "state", "accepting", "until", now + acceptingMs)
  return { "confirm", firstId }
end

local entryId = redis.call("XADD", streamKey, "*", "data", envelope)
if acceptingMs > 0 then
  redis.call("HSET", recordKey, "state", "accepting", "until", now + acceptingMs, "id", id,
    "fingerprint", fingerprint, "entry", entryId)
else
  redis.call("HSET", recordKey, "state", "accepted", "id", id, "fingerprint", fingerprint, "entry", entryId)
end
redis.call("PEXPIRE", recordKey, ttl)
return { "new", id }
