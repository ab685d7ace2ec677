local step = ARGV[1]
if not may('operator_skip', step, step_state(step)) then return 0 end
if redis.call('SREM', attention, step) == 0 then return 0 end
local at = now()
redis.call('HSETNX', results, step, ARGV[3])
-- An inline run's joins count their dependencies' results (see finish_step.lua): this is one.
for i = 4, #ARGV do redis.call('HINCRBY', steps, ARGV[i] .. '.deps_done', 1) end
redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.skipped_by', ARGV[2], step .. '.finished_at', at)
redis.call('XADD', events, '*', 'type', 'operator_skip', 'step', step, 'actor', ARGV[2], 'at', at)
refresh_state()
touch(at)
return 1
