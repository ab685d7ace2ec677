-- A child run was started for a step: link it, and mark the step running while the child runs
-- (unless the child ended and settled the step already: a repeat after a crash).
-- KEYS: the parent's steps hash   ARGV: step, child run id
if redis.call('HGET', KEYS[1], ARGV[1] .. '.state') == 'dispatched' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], ARGV[1] .. '.state', 'running',
    ARGV[1] .. '.started_at', string.format('%d.%06d', t[1], t[2]))
end
redis.call('HSET', KEYS[1], ARGV[1] .. '.child_run', ARGV[2])
return 1
