-- The validator failed the candidate: the generator runs again with the critique (a new round,
-- attempts start over); the validator step is left 'judged' and runs again on the next candidate.
-- KEYS: base..., the validator's claim   ARGV: step, validator step, issues_json
-- -> the new round, or 0 if the step is not waiting for a verdict
local claim, step, check = KEYS[14], ARGV[1], ARGV[2]
if not may('next_round', step, step_state(step)) then return 0 end
local round_no = tonumber(redis.call('HGET', steps, step .. '.round') or '1')
redis.call('HSET', steps, step .. '.round', round_no + 1, step .. '.feedback', ARGV[3], step .. '.body_runs', 0,
  step .. '.state', 'dispatched', check .. '.body_runs', 0, check .. '.state', 'judged')
redis.call('DEL', claim)
redis.call('XADD', events, '*', 'type', 'validation_failed', 'step', step, 'round', tostring(round_no),
  'issues', ARGV[3], 'at', now())
touch(now())
return round_no + 1
