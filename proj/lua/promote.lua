-- The validator passed the candidate: it becomes the step's result (once). The validator step's
-- verdict is final ('succeeded': it will not run again).
-- KEYS: base..., the validator's claim   ARGV: step, validator step, verdict_json -> 1 if promoted
local claim, step, check = KEYS[14], ARGV[1], ARGV[2]
if not may('promote', step, step_state(step)) then return 0 end
local candidate = redis.call('HGET', steps, step .. '.candidate')
if not candidate then return 0 end
local at = now()
redis.call('HSETNX', results, step, candidate)
redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.finished_at', at,
  step .. '.result_bytes', string.len(candidate), check .. '.state', 'succeeded', check .. '.verdict', ARGV[3],
  check .. '.finished_at', at)
redis.call('DEL', claim)
redis.call('XADD', events, '*', 'type', 'validation_passed', 'step', step,
  'round', redis.call('HGET', steps, step .. '.round') or '1', 'at', at)
touch(at)
return 1
