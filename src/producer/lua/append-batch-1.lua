--[[
  Appends requests to the stream in one call, in order, each as an entry with one field: what one XADD per
  request would do, for a whole batch of requests at once.

  Input:
    KEYS[1] the request stream

    ARGV[1] the entry's field name (`data`)
    ARGV[2..] one envelope per request

  Output: { appended, error }
    appended  how many envelopes, from the first on, were appended
    error     when fewer than all were: the error of the first that was not (Redis out of memory, the key
              not a stream); the ones after it were not tried
]]
local stream = KEYS[1]
local field = ARGV[1]
for i = 2, #ARGV do
  local reply = redis.pcall('XADD', stream, '*', field, ARGV[i])
  if type(reply) == 'table' and reply.err then
    return { i - 2, reply.err }
  end
end
return { #ARGV - 1 }
