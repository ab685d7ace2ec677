-- Report progress of a running step (ctx.emit, streamed model tokens) on the run's progress
-- stream, capped at ARGV[1] entries (approximately). Once the run has ended the stream expires
-- with it; a run that is gone keeps nothing.
-- KEYS: progress, run   ARGV: maxlen, type, step, text   -> 1 if kept
local ttl = redis.call('TTL', KEYS[2])
if ttl == -2 then return 0 end
local t = redis.call('TIME')
local at = string.format('%d.%06d', t[1], t[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'type', ARGV[2], 'step', ARGV[3], 'text', ARGV[4], 'at', at)
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
else
  redis.call('HSETNX', KEYS[2], 'progress', '1')  -- the run's end expires the stream with it
end
return 1
