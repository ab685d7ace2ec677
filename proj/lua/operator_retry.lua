-- Operator: run a failed step again (attempts start over) / give it an output and go on.
-- ARGV: step, actor ('retry')  |  step, actor, output_json ('skip') -> 1 if it acted
local step = ARGV[1]
if not may('operator_retry', step, step_state(step)) then return 0 end
if redis.call('SREM', attention, step) == 0 then return 0 end
local at = now()
redis.call('HSET', steps, step .. '.state', 'dispatched', step .. '.body_runs', 0, step .. '.dispatched_at', at)
redis.call('XADD', events, '*', 'type', 'operator_retry', 'step', step, 'actor', ARGV[2], 'at', at)
refresh_state()
touch(at)
return 1
