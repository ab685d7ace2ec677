-- A map step's list arrived: record how many members it has, once. An empty list completes the
-- step at once (its result is []).
-- KEYS: base...   ARGV: step, n_members
-- -> 1 (opened now) | 0 (opened before: a re-drive)
local step, n = ARGV[1], tonumber(ARGV[2])
if redis.call('HSETNX', steps, step .. '.members', n) == 0 then return 0 end
local at = now()
if n == 0 then
  redis.call('HSETNX', results, step, '[]')
  redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.started_at', at, step .. '.finished_at', at,
    step .. '.result_bytes', 2)
else
  redis.call('HSET', steps, step .. '.state', 'running', step .. '.started_at', at)
end
touch(at)
return 1
